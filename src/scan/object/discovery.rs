//! Finding repositories: the first page decides how (rolled up at `/_`, or folder by folder), key
//! ranges listed at once and cut again while a listing slot is free, the folder walk.

use super::*;

impl Scanner {
    /// Lists the first page with the `/_` delimiter and decides how to find repositories.
    pub(super) async fn probe(&self, prefix: &str) -> Result<Option<Discovery>, StorageError> {
        let first_page = self
            .list(ListRequest {
                prefix,
                delimiter: Some(ROLL_UP),
                max_keys: Some(self.options.page_size),
                ..Default::default()
            })
            .await?;
        if first_page.prefixes.is_empty() && first_page.objects.is_empty() {
            return Ok(None);
        }
        if self.options.discovery == DiscoveryMode::Walk {
            return Ok(Some(Discovery::Walk));
        }
        let rolls_up = match first_page.prefixes.first() {
            None => false,
            Some(_) if first_page.prefixes.iter().all(|p| p.ends_with(ROLL_UP)) => true,
            // Some stores (s3s, fake-gcs-server) return the prefix cut after its first `/`: it still rolls
            // up at `/_` if the keys under it start with `_`.
            Some(first) if first.ends_with('/') => {
                let group = format!("{first}_");
                let page = self.list(ListRequest { prefix: &group, max_keys: Some(1), ..Default::default() }).await?;
                !page.objects.is_empty()
            }
            Some(_) => false,
        };
        if !rolls_up {
            return Ok(Some(Discovery::Walk));
        }
        let splittable = match (&first_page.next_token, first_page.prefixes.last()) {
            (Some(_), Some(last)) => {
                let after = after_group(&group_key(last));
                let page = self
                    .list(ListRequest {
                        prefix,
                        delimiter: Some(ROLL_UP),
                        start_after: Some(&after),
                        max_keys: Some(1),
                        ..Default::default()
                    })
                    .await?;
                page.prefixes.iter().chain(page.objects.iter().map(|o| &o.key)).all(|key| key.as_str() > after.as_str())
            }
            _ => false,
        };
        Ok(Some(Discovery::RollUp { first_page, splittable }))
    }

    /// Finds every repository and sends its name; errors become error items.
    pub(super) async fn discover(self: Arc<Self>, prefix: String, discovery: Discovery, found: mpsc::Sender<String>) {
        let workers = self.options.list_concurrency;
        match discovery {
            Discovery::RollUp { first_page, splittable } => {
                let first = KeyRange { after: None, before: None, token: None, last_page_entries: 0 };
                let Some(rest) = self.take_page(&prefix, &first, first_page, &found).await else { return };
                let scanner = self.clone();
                run_pool(workers, rest.into_iter().collect(), move |range, pool| {
                    let scanner = scanner.clone();
                    let prefix = prefix.clone();
                    let found = found.clone();
                    async move { scanner.list_range(&prefix, range, splittable, &pool, &found).await }
                })
                .await;
            }
            Discovery::Walk => {
                let scanner = self.clone();
                run_pool(workers, vec![prefix.clone()], move |folder, pool| {
                    let scanner = scanner.clone();
                    let found = found.clone();
                    let prefix = prefix.clone();
                    async move { scanner.walk_folder(&prefix, folder, &pool, &found).await }
                })
                .await;
            }
        }
    }

    /// Takes the repositories of one page of `range`; returns the rest of the range, if any.
    pub(super) async fn take_page(
        &self,
        prefix: &str,
        range: &KeyRange,
        page: ListPage,
        found: &mpsc::Sender<String>,
    ) -> Option<Option<KeyRange>> {
        let mut last: Option<String> = None;
        let mut passed_end = false;
        let mut entries = 0;
        for raw in &page.prefixes {
            let group = group_key(raw);
            if !range.contains(&group) {
                passed_end |= range.before.as_deref().is_some_and(|before| group.as_str() >= before);
                continue;
            }
            entries += 1;
            let name = &group[prefix.len()..group.len() - ROLL_UP.len()];
            if !name.is_empty() && self.found_repository(prefix, name, found).await.is_err() {
                return None;
            }
            last = last.max(Some(after_group(&group)));
        }
        for object in &page.objects {
            passed_end |= range.before.as_deref().is_some_and(|before| object.key.as_str() >= before);
            if range.contains(&object.key) {
                entries += 1;
                last = last.max(Some(object.key.clone()));
            }
        }
        if page.next_token.is_none() || passed_end {
            return Some(None);
        }
        let after = last.or(range.after.clone());
        Some(Some(KeyRange { after, before: range.before.clone(), token: page.next_token, last_page_entries: entries }))
    }

    /// Checks a repository name and hands it to the tag scans.
    pub(super) async fn found_repository(
        &self,
        prefix: &str,
        name: &str,
        found: &mpsc::Sender<String>,
    ) -> Result<(), ConsumerGone> {
        if !self.options.shard.owns(name) {
            return Ok(());
        }
        match check_repository(name) {
            Ok(()) => found.send(name.to_string()).await.map_err(|_| ConsumerGone),
            Err(error) => self.emit(ScanItem::Error(ItemError::new(format!("{prefix}{name}/"), error))).await,
        }
    }

    /// Lists `range` page by page; whenever a listing slot is free and the rest of the range looks large
    /// enough (`worth_cutting`, from the density of the page just listed), cuts the rest in two.
    ///
    /// Pages follow each other by start-after, so that a range can be cut anywhere. On a store that does
    /// not honour start-after (checked once in the probe, and again whenever a page brings nothing new),
    /// pages follow the store's own tokens instead, and the range is never cut.
    pub(super) async fn list_range(
        &self,
        prefix: &str,
        mut range: KeyRange,
        splittable: bool,
        pool: &Pool<KeyRange>,
        found: &mpsc::Sender<String>,
    ) {
        let mut by_token = !splittable && range.token.is_some();
        // Where the page that ended at `range.after` started (the first range's first page: at the start).
        let mut page_start: Option<String> = None;
        loop {
            if !by_token && pool.has_free_slot() {
                if let Some(cut) = self.cut_point(prefix, page_start.as_deref(), &range) {
                    let rest = KeyRange {
                        after: Some(cut.clone()),
                        before: range.before.clone(),
                        token: None,
                        last_page_entries: 0,
                    };
                    // Refused (the queue is full): this range stays whole.
                    if pool.offer(rest).is_none() {
                        range.before = Some(cut);
                    }
                }
            }
            page_start = range.after.clone();
            let request = ListRequest {
                prefix,
                delimiter: Some(ROLL_UP),
                start_after: if by_token { None } else { range.after.as_deref() },
                page_token: if by_token { range.token.as_deref() } else { None },
                max_keys: Some(self.options.page_size),
            };
            let page = match self.list(request).await {
                Ok(page) => page,
                Err(error) => {
                    let key = format!("{prefix} (after {})", range.after.as_deref().unwrap_or("the start"));
                    let _ = self.emit(ScanItem::Error(ItemError::new(key, error))).await;
                    return;
                }
            };
            let Some(Some(rest)) = self.take_page(prefix, &range, page, found).await else { return };
            if rest.after == range.after && !by_token {
                // Nothing new after the start-after key: the store ignored it. Follow its tokens, which is
                // possible from the start of the key space only; a cut range cannot be finished.
                if range.before.is_some() {
                    let key = format!("{prefix} (after {})", range.after.as_deref().unwrap_or("the start"));
                    let message = "the store ignored start-after in a cut key range: repositories in it may be missing (use --list-concurrency 1)";
                    let _ = self.emit(ScanItem::Error(ItemError::new(key, message))).await;
                    return;
                }
                if rest.token.is_none() {
                    return;
                }
                by_token = true;
            }
            range = rest;
        }
    }

    /// Where to cut the rest of `range`, if it is worth it.
    pub(super) fn cut_point(&self, prefix: &str, page_start: Option<&str>, range: &KeyRange) -> Option<String> {
        let after = range.after.as_deref()?;
        let before = range.before.as_deref();
        worth_cutting(prefix, page_start, after, before, range.last_page_entries, self.options.page_size)
            .then(|| midpoint(prefix, after, before))
            .flatten()
    }

    /// The `/` walk for stores that do not roll up at `/_`: lists one folder's children.
    pub(super) async fn walk_folder(
        &self,
        prefix: &str,
        folder: String,
        pool: &Pool<String>,
        found: &mpsc::Sender<String>,
    ) {
        let mut token: Option<String> = None;
        let mut is_repository = false;
        loop {
            let request = ListRequest {
                prefix: &folder,
                delimiter: Some("/"),
                page_token: token.as_deref(),
                max_keys: Some(self.options.page_size),
                ..Default::default()
            };
            let page = match self.list(request).await {
                Ok(page) => page,
                Err(error) => {
                    let _ = self.emit(ScanItem::Error(ItemError::new(folder.clone(), error))).await;
                    return;
                }
            };
            for child in &page.prefixes {
                let Some(name) = child.strip_prefix(folder.as_str()).map(|c| c.trim_end_matches('/')) else { continue };
                match layout::classify_child(name.as_bytes()) {
                    layout::ChildKind::RepositoryMarker => is_repository = folder.len() > prefix.len(),
                    layout::ChildKind::Reserved => {}
                    layout::ChildKind::Component => match check_component(name) {
                        Ok(()) => {
                            if let Some(child) = pool.offer(format!("{folder}{name}/")) {
                                Box::pin(self.walk_folder(prefix, child, pool, found)).await;
                            }
                        }
                        Err(error) => {
                            if self.emit(ScanItem::Error(ItemError::new(child.clone(), error))).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        if is_repository {
            let name = folder[prefix.len()..].trim_end_matches('/');
            let _ = self.found_repository(prefix, name, found).await;
        }
    }
}

/// The key of a rolled-up group: `<prefix><name>/_`, whether the store returned the prefix with its
/// `_` (S3, Azure) or cut after the `/` (s3s, fake-gcs-server).
pub(super) fn group_key(raw: &str) -> String {
    if raw.ends_with(ROLL_UP) {
        raw.to_string()
    } else {
        format!("{}{ROLL_UP}", raw.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_from_both_prefix_shapes() {
        let p = "docker/registry/v2/repositories/";
        assert_eq!(group_key(&format!("{p}a/b/_")), format!("{p}a/b/_"));
        assert_eq!(group_key(&format!("{p}a/b/")), format!("{p}a/b/_"));
    }
}
