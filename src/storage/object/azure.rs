//! Azure Blob Storage: List Blobs (prefix, delimiter, marker, `startFrom`; `Content-MD5` listed) and
//! Get Blob, by raw blob name, so that names with the leading `/` that distribution 2.8 wrote are listed
//! and read like any other.
//!
//! Credentials through `object_store`'s builder: `AZURE_STORAGE_ACCOUNT_NAME` with
//! `AZURE_STORAGE_ACCOUNT_KEY`, a SAS (`AZURE_STORAGE_SAS_KEY`), or Entra ID (client secret, workload
//! identity, managed identity). `AZURE_STORAGE_USE_EMULATOR=true` selects Azurite's well-known account.
//! The endpoint is `https://<account>.blob.core.windows.net` unless `--endpoint` (or
//! `AZURE_STORAGE_ENDPOINT`) gives the account URL, e.g. `http://127.0.0.1:10000/devstoreaccount1`.

use std::sync::Arc;

use object_store::azure::{AzureAuthorizer, AzureConfigKey, AzureCredential, MicrosoftAzure, MicrosoftAzureBuilder};
use serde::Deserialize;
use url::Url;

use super::{encode_key_path, found, http_client, http_request, listing_text, md5_from_base64, send, to_reqwest};
use super::{ListPage, ListRequest, ListedObject, ObjectOptions, StorageError};

/// The REST version asked for: the one `object_store` signs with.
const API_VERSION: &str = "2023-11-03";
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

pub struct Azure {
    client: reqwest::Client,
    /// `https://<account>.blob.core.windows.net/<container>`
    container_url: Url,
    account: String,
    /// `None` for anonymous access.
    store: Option<MicrosoftAzure>,
}

impl Azure {
    pub fn connect(container: &str, options: &ObjectOptions) -> Result<Azure, StorageError> {
        let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
        let use_emulator = builder.get_config_value(&AzureConfigKey::UseEmulator).is_some_and(|v| v == "true");
        let account = builder
            .get_config_value(&AzureConfigKey::AccountName)
            .or_else(|| use_emulator.then(|| EMULATOR_ACCOUNT.to_string()))
            .unwrap_or_default();
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| builder.get_config_value(&AzureConfigKey::Endpoint))
            .or_else(|| use_emulator.then(|| format!("http://127.0.0.1:10000/{EMULATOR_ACCOUNT}")))
            .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
        if account.is_empty() && !endpoint.contains(".blob.") && !options.anonymous {
            return Err(StorageError::Config("Azure: set AZURE_STORAGE_ACCOUNT_NAME (or use --anonymous)".into()));
        }
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        let container_url = format!("{}/{container}", endpoint.trim_end_matches('/'));
        let container_url = Url::parse(&container_url)
            .map_err(|e| StorageError::Config(format!("Azure endpoint {endpoint:?}: {e}")))?;
        let store = if options.anonymous {
            None
        } else {
            Some(
                builder
                    .with_endpoint(endpoint.clone())
                    .build()
                    .map_err(|e| StorageError::Config(format!("Azure: {e}")))?,
            )
        };
        Ok(Azure { client: http_client(options)?, container_url, account, store })
    }

    async fn credential(&self) -> Result<Option<Arc<AzureCredential>>, StorageError> {
        match &self.store {
            None => Ok(None),
            Some(store) => store
                .credentials()
                .get_credential()
                .await
                .map(Some)
                .map_err(|e| StorageError::Credentials(e.to_string())),
        }
    }

    async fn signed_get(&self, url: &Url) -> Result<reqwest::RequestBuilder, StorageError> {
        let mut request = http_request(http::Method::GET, url);
        match self.credential().await? {
            Some(credential) => AzureAuthorizer::new(&credential, &self.account)
                .try_authorize(&mut request)
                .map_err(|e| StorageError::Credentials(e.to_string()))?,
            None => {
                request.headers_mut().insert("x-ms-version", http::HeaderValue::from_static(API_VERSION));
            }
        }
        Ok(to_reqwest(&self.client, request))
    }

    pub async fn list(&self, request: &ListRequest<'_>) -> Result<ListPage, StorageError> {
        let mut url = self.container_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("restype", "container");
            query.append_pair("comp", "list");
            query.append_pair("prefix", request.prefix);
            if let Some(delimiter) = request.delimiter {
                query.append_pair("delimiter", delimiter);
            }
            if let Some(token) = request.page_token {
                query.append_pair("marker", token);
            } else if let Some(start_after) = request.start_after {
                // startFrom is inclusive: the key itself is dropped below.
                query.append_pair("startFrom", start_after);
            }
            if let Some(max_keys) = request.max_keys {
                query.append_pair("maxresults", &max_keys.to_string());
            }
        }
        let response = send("list", request.prefix, || self.signed_get(&url)).await?;
        let body = listing_text(request.prefix, response).await?;
        let mut page = parse_list(&body).map_err(|message| StorageError::Parse {
            operation: "list",
            target: request.prefix.to_string(),
            message,
        })?;
        if request.page_token.is_none() {
            if let Some(start) = request.start_after {
                page.objects.retain(|o| o.key != start);
                page.prefixes.retain(|p| p != start);
            }
        }
        Ok(page)
    }

    /// GETs a blob; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<reqwest::Response>, StorageError> {
        let mut url = self.container_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        // A name starting with `/` keeps it: `<container>//docker/...` is that blob's URL.
        url.set_path(&format!("{base}/{}", encode_key_path(key)));
        found(key, send("read", key, || self.signed_get(&url)).await?).await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    blobs: Blobs,
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blobs: Vec<Blob>,
    #[serde(rename = "BlobPrefix", default)]
    prefixes: Vec<BlobPrefix>,
}

#[derive(Deserialize)]
struct Blob {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties", default)]
    properties: Properties,
}

#[derive(Deserialize, Default)]
struct Properties {
    #[serde(rename = "Content-MD5")]
    content_md5: Option<String>,
}

#[derive(Deserialize)]
struct BlobPrefix {
    #[serde(rename = "Name")]
    name: String,
}

fn parse_list(body: &str) -> Result<ListPage, String> {
    let body = body.trim_start_matches('\u{feff}');
    let result: EnumerationResults = quick_xml::de::from_str(body).map_err(|e| e.to_string())?;
    Ok(ListPage {
        objects: result
            .blobs
            .blobs
            .into_iter()
            .map(|b| ListedObject { md5: b.properties.content_md5.as_deref().and_then(md5_from_base64), key: b.name })
            .collect(),
        prefixes: result.blobs.prefixes.into_iter().map(|p| p.name).collect(),
        next_token: result.next_marker.filter(|m| !m.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_blobs_answer_with_interleaved_prefixes() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>
<EnumerationResults ServiceEndpoint=\"http://x/\" ContainerName=\"c\"><Prefix>/r/</Prefix><Delimiter>/_</Delimiter>
<Blobs>
  <BlobPrefix><Name>/r/a/_</Name></BlobPrefix>
  <Blob><Name>/r/b/file</Name><Properties><Content-Length>71</Content-Length><Content-MD5>ASNFZ4mrze8BI0VniavN7w==</Content-MD5></Properties></Blob>
  <BlobPrefix><Name>/r/c/_</Name></BlobPrefix>
</Blobs><NextMarker>m2</NextMarker></EnumerationResults>";
        let page = parse_list(body).unwrap();
        assert_eq!(page.prefixes, vec!["/r/a/_", "/r/c/_"]);
        assert_eq!(page.objects[0].key, "/r/b/file");
        assert_eq!(page.objects[0].md5.unwrap()[0], 0x01);
        assert_eq!(page.next_token.as_deref(), Some("m2"));
    }
}
