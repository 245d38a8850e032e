//! Azure Blob Storage: List Blobs (prefix, delimiter, marker, `startFrom`; `Content-MD5` listed) and
//! Get Blob, by raw blob name, so that names with the leading `/` that distribution 2.8 wrote are listed
//! and read like any other.
//!
//! Credentials through `object_store`'s builder: `AZURE_STORAGE_ACCOUNT_NAME` with
//! `AZURE_STORAGE_ACCOUNT_KEY`, a SAS (`AZURE_STORAGE_SAS_KEY`), or Entra ID (client secret, workload
//! identity, managed identity); or `AZURE_STORAGE_CONNECTION_STRING` as the Azure CLI reads it (account,
//! key or SAS, endpoint). `AZURE_STORAGE_USE_EMULATOR=true` selects Azurite's well-known account at
//! `AZURITE_BLOB_STORAGE_URL` (default `http://127.0.0.1:10000`). Otherwise the endpoint is
//! `https://<account>.blob.core.windows.net`, unless `--endpoint` (or `AZURE_STORAGE_ENDPOINT`, or the
//! connection string) gives the account URL, e.g. `http://127.0.0.1:10000/devstoreaccount1`.

use object_store::azure::{AzureAuthorizer, AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use serde::Deserialize;
use url::Url;

use super::{
    current_credential, encode_key_path, found, http_client, http_request, listing_text, md5_from_base64, send,
    to_reqwest, with_range,
};
use super::{ListPage, ListRequest, ListedObject, ObjectOptions, Span, StorageError};

/// The REST version asked for: the one `object_store` signs with.
const API_VERSION: &str = "2023-11-03";
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

pub struct Azure {
    pub(super) client: crate::http::Client,
    /// `https://<account>.blob.core.windows.net/<container>`
    container_url: Url,
    account: String,
    /// `None` for anonymous access.
    store: Option<MicrosoftAzure>,
    /// What was looked for, when nothing named a credential (a managed identity was the last resort).
    nothing_named: Option<&'static str>,
}

/// What was looked for, for the one line an operator reads when no credential was found.
const LOOKED_FOR: &str = "no Azure credentials found (looked for AZURE_STORAGE_ACCOUNT_KEY, \
     AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_CONNECTION_STRING, a service principal or workload identity \
     (AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE), the \
     Azure CLI's login (`az` on PATH) and a managed identity): run `az login`, set one of those, or pass \
     --anonymous for a public container";

/// Whether the configuration names a credential, rather than leaving it to the Azure CLI or a managed
/// identity.
fn names_a_credential(builder: &MicrosoftAzureBuilder) -> bool {
    let set = |key: AzureConfigKey| builder.get_config_value(&key).is_some_and(|v| !v.is_empty() && v != "false");
    [
        AzureConfigKey::AccessKey,
        AzureConfigKey::SasKey,
        AzureConfigKey::Token,
        AzureConfigKey::ClientSecret,
        AzureConfigKey::FederatedTokenFile,
        AzureConfigKey::UseEmulator,
        AzureConfigKey::UseAzureCli,
    ]
    .into_iter()
    .any(set)
}

/// Whether the Azure CLI (`az`) is on PATH: its login is then the credential, as the Azure SDKs'
/// default chain takes it on a workstation.
fn azure_cli_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("az").is_file()))
}

impl Azure {
    pub fn connect(container: &str, options: &ObjectOptions) -> Result<Azure, StorageError> {
        let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
        let connection = match std::env::var("AZURE_STORAGE_CONNECTION_STRING") {
            Ok(text) if !text.trim().is_empty() => Some(ConnectionString::parse(&text)?),
            _ => None,
        };
        if let Some(connection) = &connection {
            builder = connection.configure(builder);
        }
        let use_emulator = builder.get_config_value(&AzureConfigKey::UseEmulator).is_some_and(|v| v == "true");
        let account = builder
            .get_config_value(&AzureConfigKey::AccountName)
            .or_else(|| use_emulator.then(|| EMULATOR_ACCOUNT.to_string()))
            .unwrap_or_default();
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| connection.as_ref().and_then(|c| c.blob_endpoint.clone()))
            .or_else(|| builder.get_config_value(&AzureConfigKey::Endpoint))
            .or_else(|| use_emulator.then(emulator_endpoint))
            .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
        if account.is_empty() && !endpoint.contains(".blob.") && !options.anonymous {
            return Err(StorageError::Config(
                "Azure: set AZURE_STORAGE_ACCOUNT_NAME or AZURE_STORAGE_CONNECTION_STRING (or use --anonymous)".into(),
            ));
        }
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        let container_url = format!("{}/{container}", endpoint.trim_end_matches('/'));
        let container_url = Url::parse(&container_url)
            .map_err(|e| StorageError::Config(format!("Azure endpoint {endpoint:?}: {e}")))?;
        let last_resort = !options.anonymous && !names_a_credential(&builder);
        let use_azure_cli = last_resort && azure_cli_installed();
        if use_azure_cli {
            builder = builder.with_use_azure_cli(true);
        }
        let store = if options.anonymous {
            None
        } else {
            let built = builder.with_endpoint(endpoint.clone()).build();
            Some(built.map_err(|e| StorageError::Config(format!("Azure: {e}")))?)
        };
        let nothing_named = (last_resort && !use_azure_cli).then_some(LOOKED_FOR);
        Ok(Azure { client: http_client(options)?, container_url, account, store, nothing_named })
    }

    async fn signed_get(&self, url: &Url, span: Span) -> Result<reqwest::RequestBuilder, StorageError> {
        let mut request = http_request(http::Method::GET, url);
        with_range(&mut request, span);
        match current_credential(self.store.as_ref().map(|store| store.credentials()), self.nothing_named).await? {
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
        let response = send(&self.client, "list", request.prefix, self.signed_get(&url, Span::from(0))).await?;
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
    pub async fn get(&self, key: &str, span: Span) -> Result<Option<reqwest::Response>, StorageError> {
        let mut url = self.container_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        // A name starting with `/` keeps it: `<container>//docker/...` is that blob's URL.
        url.set_path(&format!("{base}/{}", encode_key_path(key)));
        found(key, send(&self.client, "read", key, self.signed_get(&url, span)).await?).await
    }
}

/// Azurite's account URL: `AZURITE_BLOB_STORAGE_URL` (object_store's variable for it, e.g.
/// `http://127.0.0.1:10000`) or Azurite's default address, with the development account.
fn emulator_endpoint() -> String {
    let base = std::env::var("AZURITE_BLOB_STORAGE_URL").ok().filter(|url| !url.is_empty());
    let base = base.unwrap_or_else(|| "http://127.0.0.1:10000".to_string());
    format!("{}/{EMULATOR_ACCOUNT}", base.trim_end_matches('/'))
}

/// An Azure Storage connection string (`AZURE_STORAGE_CONNECTION_STRING`), as the Azure CLI and SDKs
/// read it: `AccountName`, `AccountKey` or `SharedAccessSignature`, and the blob endpoint
/// (`BlobEndpoint`, or `DefaultEndpointsProtocol` with `EndpointSuffix`); `UseDevelopmentStorage=true`
/// means Azurite. Its secrets go to the credential builder only, never into messages.
#[derive(Default, PartialEq, Eq)]
struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    blob_endpoint: Option<String>,
    development: bool,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("account", &self.account)
            .field("blob_endpoint", &self.blob_endpoint)
            .field("development", &self.development)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    fn parse(text: &str) -> Result<ConnectionString, StorageError> {
        let mut fields = std::collections::HashMap::new();
        for part in text.split(';').map(str::trim).filter(|part| !part.is_empty()) {
            // Values (keys, signatures) may hold `=`: split at the first one only.
            let (name, value) = part.split_once('=').ok_or_else(|| {
                StorageError::Config(
                    "AZURE_STORAGE_CONNECTION_STRING: a part has no `=` (expected Name=value;...)".into(),
                )
            })?;
            fields.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
        let field = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        let development = field("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let account = field("accountname");
        let blob_endpoint = field("blobendpoint").or_else(|| {
            let (account, suffix) = (account.as_ref()?, field("endpointsuffix")?);
            let protocol = field("defaultendpointsprotocol").unwrap_or_else(|| "https".into());
            Some(format!("{protocol}://{account}.blob.{suffix}"))
        });
        let sas = field("sharedaccesssignature").map(|sas| sas.trim_start_matches('?').to_string());
        let parsed = ConnectionString { account, key: field("accountkey"), sas, blob_endpoint, development };
        if !parsed.development && parsed.account.is_none() && parsed.blob_endpoint.is_none() {
            return Err(StorageError::Config(
                "AZURE_STORAGE_CONNECTION_STRING names neither AccountName nor BlobEndpoint".into(),
            ));
        }
        Ok(parsed)
    }

    fn configure(&self, mut builder: MicrosoftAzureBuilder) -> MicrosoftAzureBuilder {
        if self.development {
            builder = builder.with_use_emulator(true);
        }
        if let Some(account) = &self.account {
            builder = builder.with_account(account);
        }
        if let Some(key) = &self.key {
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = &self.sas {
            builder = builder.with_config(AzureConfigKey::SasKey, sas);
        }
        builder
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
    fn connection_strings_are_read_as_the_azure_cli_reads_them() {
        let azurite = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5==;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        )
        .unwrap();
        assert_eq!(azurite.account.as_deref(), Some("devstoreaccount1"));
        assert_eq!(azurite.key.as_deref(), Some("a2V5=="), "a key keeps its `=` padding");
        assert_eq!(azurite.blob_endpoint.as_deref(), Some("http://127.0.0.1:10000/devstoreaccount1"));

        let cloud = ConnectionString::parse(
            "AccountName=acct;EndpointSuffix=core.windows.net;SharedAccessSignature=?sv=1&sig=x%3D",
        )
        .unwrap();
        assert_eq!(cloud.blob_endpoint.as_deref(), Some("https://acct.blob.core.windows.net"));
        assert_eq!(cloud.sas.as_deref(), Some("sv=1&sig=x%3D"));
        assert!(ConnectionString::parse("UseDevelopmentStorage=true").unwrap().development);
        assert!(ConnectionString::parse("garbage").is_err());
        assert!(ConnectionString::parse("AccountKey=abc").is_err(), "no account, no endpoint");
        assert!(!format!("{azurite:?}").contains("a2V5"), "the key never reaches a message");
    }

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
