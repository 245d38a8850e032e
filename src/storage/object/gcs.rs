//! Google Cloud Storage through its JSON API: `objects.list` (prefix, delimiter, `startOffset`, page
//! token; `md5Hash` listed for every non-composite object) and media downloads.
//!
//! Credentials as Google's tools find them, through `object_store`'s builder: `GOOGLE_SERVICE_ACCOUNT`,
//! `GOOGLE_SERVICE_ACCOUNT_PATH`, `GOOGLE_APPLICATION_CREDENTIALS` (service-account or authorized-user
//! JSON), the application-default file `gcloud auth application-default login` writes
//! (`~/.config/gcloud/application_default_credentials.json`), or the metadata server.
//! `STORAGE_EMULATOR_HOST` (as Google's own client libraries read it) or `--endpoint` points at an
//! emulator such as fake-gcs-server, which takes no credentials.

use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey};
use serde::Deserialize;
use url::Url;

use super::{current_credential, found, http_client, listing_text, md5_from_base64, send};
use super::{ListPage, ListRequest, ListedObject, ObjectOptions, Span, StorageError};

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

pub struct Gcs {
    pub(super) client: crate::http::Client,
    /// `https://storage.googleapis.com/storage/v1/b/<bucket>/o`
    objects_url: Url,
    /// `None` for anonymous access and emulators.
    store: Option<GoogleCloudStorage>,
    /// What was looked for, when nothing named a credential (the metadata server was the last resort).
    nothing_named: Option<&'static str>,
}

/// What was looked for, for the one line an operator reads when no credential was found.
const LOOKED_FOR: &str = "no Google credentials found (looked for GOOGLE_APPLICATION_CREDENTIALS, \
     GOOGLE_SERVICE_ACCOUNT_PATH, GOOGLE_SERVICE_ACCOUNT_KEY, the application-default file \
     ~/.config/gcloud/application_default_credentials.json and the metadata server): run `gcloud auth \
     application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a key file, or pass --anonymous \
     for a public bucket";

/// Whether the configuration or the application-default file names a credential.
fn names_a_credential(builder: &GoogleCloudStorageBuilder) -> bool {
    let set = |key: GoogleConfigKey| builder.get_config_value(&key).is_some_and(|v| !v.is_empty());
    let adc_file = std::env::var_os("HOME")
        .map(|home| std::path::Path::new(&home).join(".config/gcloud/application_default_credentials.json").exists());
    [GoogleConfigKey::ServiceAccount, GoogleConfigKey::ServiceAccountKey, GoogleConfigKey::ApplicationCredentials]
        .into_iter()
        .any(set)
        || adc_file == Some(true)
}

impl Gcs {
    pub fn connect(bucket: &str, options: &ObjectOptions) -> Result<Gcs, StorageError> {
        let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|v| !v.is_empty());
        let endpoint = options.endpoint.clone().or(emulator.clone()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = if endpoint.contains("://") { endpoint } else { format!("http://{endpoint}") };
        let objects_url = format!("{}/storage/v1/b/{bucket}/o", endpoint.trim_end_matches('/'));
        let objects_url =
            Url::parse(&objects_url).map_err(|e| StorageError::Config(format!("GCS endpoint {endpoint:?}: {e}")))?;
        let builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
        let nothing_named = (!names_a_credential(&builder)).then_some(LOOKED_FOR);
        let store = if options.anonymous || emulator.is_some() {
            None
        } else {
            Some(builder.build().map_err(|e| StorageError::Config(format!("GCS: {e}")))?)
        };
        Ok(Gcs { client: http_client(options)?, objects_url, store, nothing_named })
    }

    async fn authorized_get(&self, url: &Url, span: Span) -> Result<reqwest::RequestBuilder, StorageError> {
        let mut request = self.client.get(url.clone());
        if let Some(range) = span.header() {
            request = request.header(reqwest::header::RANGE, range);
        }
        match current_credential(self.store.as_ref().map(|store| store.credentials()), self.nothing_named).await? {
            Some(credential) if !credential.bearer.is_empty() => Ok(request.bearer_auth(&credential.bearer)),
            _ => Ok(request),
        }
    }

    pub async fn list(&self, request: &ListRequest<'_>) -> Result<ListPage, StorageError> {
        let mut url = self.objects_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("prefix", request.prefix);
            if let Some(delimiter) = request.delimiter {
                query.append_pair("delimiter", delimiter);
            }
            if let Some(token) = request.page_token {
                query.append_pair("pageToken", token);
            } else if let Some(start_after) = request.start_after {
                // startOffset is inclusive: the key itself is dropped below.
                query.append_pair("startOffset", start_after);
            }
            if let Some(max_keys) = request.max_keys {
                query.append_pair("maxResults", &max_keys.to_string());
            }
        }
        let response = send(&self.client, "list", request.prefix, self.authorized_get(&url, Span::from(0))).await?;
        let body = listing_text(request.prefix, response).await?;
        let answer: ObjectsList = serde_json::from_str(&body).map_err(|e| StorageError::Parse {
            operation: "list",
            target: request.prefix.to_string(),
            message: e.to_string(),
        })?;
        let is_start = |name: &str| request.page_token.is_none() && Some(name) == request.start_after;
        Ok(ListPage {
            objects: answer
                .items
                .into_iter()
                .filter(|item| !is_start(&item.name))
                .map(|item| ListedObject { md5: item.md5_hash.as_deref().and_then(md5_from_base64), key: item.name })
                .collect(),
            prefixes: answer.prefixes.into_iter().filter(|p| !is_start(p)).collect(),
            next_token: answer.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// GETs an object's content; `None` when it does not exist.
    pub async fn get(&self, key: &str, span: Span) -> Result<Option<reqwest::Response>, StorageError> {
        let mut url = self.objects_url.clone();
        url.path_segments_mut().expect("an http URL has a path").push(key);
        url.query_pairs_mut().append_pair("alt", "media");
        found(key, send(&self.client, "read", key, self.authorized_get(&url, span)).await?).await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectsList {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: String,
    md5_hash: Option<String>,
}
