//! Amazon S3 and S3-compatible stores (MinIO, Ceph RGW, OSS, moto, s3s...): ListObjectsV2 and GET.
//!
//! Credentials and region come as the AWS tools find them (`aws_credentials`: environment, profiles,
//! SSO, `credential_process`, web identity, ECS, instance metadata); the endpoint and addressing style
//! from the usual variables through `object_store`'s builder (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT`,
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, `AWS_SKIP_SIGNATURE`), with `--endpoint` and `--anonymous` on top.
//! Requests are path-style unless virtual-hosted style is asked for, which is what S3-compatible stores
//! expect.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use serde::Deserialize;
use url::Url;

use super::aws_credentials::{self, AwsCredentials};
use super::{
    encode_key_path, found, http_client, http_request, listing_text, md5_from_hex_etag, send, to_reqwest, with_range,
};
use super::{ListPage, ListRequest, ListedObject, ObjectOptions, Span, StorageError};

pub struct S3 {
    pub(super) client: crate::http::Client,
    /// `https://endpoint/bucket` (path style) or `https://bucket.endpoint` (virtual-hosted style).
    bucket_url: Url,
    region: String,
    /// `None` for anonymous access.
    credentials: Option<AwsCredentials>,
}

impl S3 {
    pub async fn connect(bucket: &str, options: &ObjectOptions) -> Result<S3, StorageError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let config = |key| builder.get_config_value(&key);
        let region = aws_credentials::region().await.unwrap_or_else(|| "us-east-1".to_string());
        let virtual_hosted = config(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let anonymous = options.anonymous || config(AmazonS3ConfigKey::SkipSignature).is_some_and(|v| v == "true");
        let bucket_url = match (config(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let bucket_url =
            Url::parse(&bucket_url).map_err(|e| StorageError::Config(format!("S3 endpoint {bucket_url:?}: {e}")))?;
        let credentials = if anonymous { None } else { Some(AwsCredentials::from_default_chain(&region).await) };
        Ok(S3 { client: http_client(options)?, bucket_url, region, credentials })
    }

    /// A GET of the bytes `span` of `url`, signed with SigV4 unless anonymous.
    async fn signed_get(&self, url: &Url, span: Span) -> Result<reqwest::RequestBuilder, StorageError> {
        let mut request = http_request(http::Method::GET, url);
        with_range(&mut request, span);
        if let Some(credentials) = &self.credentials {
            AwsAuthorizer::new(&*credentials.current().await?, "s3", &self.region)
                .try_authorize(&mut request, None)
                .map_err(|e| StorageError::Credentials(e.to_string()))?;
        }
        Ok(to_reqwest(&self.client, request))
    }

    pub async fn list(&self, request: &ListRequest<'_>) -> Result<ListPage, StorageError> {
        let mut url = self.bucket_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("list-type", "2");
            query.append_pair("prefix", request.prefix);
            if let Some(delimiter) = request.delimiter {
                query.append_pair("delimiter", delimiter);
            }
            if let Some(token) = request.page_token {
                query.append_pair("continuation-token", token);
            } else if let Some(start_after) = request.start_after {
                query.append_pair("start-after", start_after);
            }
            if let Some(max_keys) = request.max_keys {
                query.append_pair("max-keys", &max_keys.to_string());
            }
        }
        let response = send(&self.client, "list", request.prefix, self.signed_get(&url, Span::from(0))).await?;
        let body = listing_text(request.prefix, response).await?;
        parse_list(&body).map_err(|message| StorageError::Parse {
            operation: "list",
            target: request.prefix.to_string(),
            message,
        })
    }

    /// GETs an object; `None` when it does not exist.
    pub async fn get(&self, key: &str, span: Span) -> Result<Option<reqwest::Response>, StorageError> {
        let url = object_url(&self.bucket_url, key);
        found(key, send(&self.client, "read", key, self.signed_get(&url, span)).await?).await
    }
}

fn object_url(bucket_url: &Url, key: &str) -> Url {
    let mut url = bucket_url.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/{}", encode_key_path(key)));
    url
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    next_continuation_token: Option<String>,
    is_truncated: Option<bool>,
}

#[derive(Deserialize)]
struct Contents {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "ETag")]
    etag: Option<String>,
}

#[derive(Deserialize)]
struct CommonPrefix {
    #[serde(rename = "Prefix")]
    prefix: String,
}

fn parse_list(body: &str) -> Result<ListPage, String> {
    let result: ListBucketResult = quick_xml::de::from_str(body).map_err(|e| e.to_string())?;
    let truncated = result.is_truncated.unwrap_or(false);
    Ok(ListPage {
        objects: result
            .contents
            .into_iter()
            .map(|c| ListedObject { md5: c.etag.as_deref().and_then(md5_from_hex_etag), key: c.key })
            .collect(),
        prefixes: result.common_prefixes.into_iter().map(|p| p.prefix).collect(),
        next_token: result.next_continuation_token.filter(|_| truncated),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_objects_v2_answer() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>r/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
  <Contents><Key>r/a/_manifests/tags/x/current/link</Key><ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>71</Size></Contents>
  <Contents><Key>r/odd//key</Key><Size>1</Size></Contents>
  <CommonPrefixes><Prefix>r/b/_</Prefix></CommonPrefixes>
  <NextContinuationToken>tok</NextContinuationToken>
</ListBucketResult>"#;
        let page = parse_list(body).unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].md5.unwrap()[15], 0xef);
        assert_eq!(page.objects[1].key, "r/odd//key", "keys are kept byte for byte");
        assert_eq!(page.objects[1].md5, None);
        assert_eq!(page.prefixes, vec!["r/b/_"]);
        assert_eq!(page.next_token.as_deref(), Some("tok"));
    }

    #[test]
    fn object_urls_keep_the_bucket_path() {
        let url = Url::parse("http://127.0.0.1:9000/bucket").unwrap();
        assert_eq!(object_url(&url, "a/b c").as_str(), "http://127.0.0.1:9000/bucket/a/b%20c");
    }
}
