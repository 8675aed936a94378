//! Setting up a bucket's object store from its configuration.
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use super::*;

pub(super) fn open_store(
    data_dir: &FsPath,
    backend: &Backend,
) -> Result<(Arc<dyn ObjectStore>, String), OpenError> {
    match backend {
        Backend::Local { root } => {
            let root = data_dir.join(root);
            std::fs::create_dir_all(&root).map_err(|source| OpenError::Dir { path: root.clone(), source })?;
            let store =
                LocalFileSystem::new_with_prefix(&root)?.with_fsync(true).with_automatic_cleanup(true);
            Ok((Arc::new(store), root.display().to_string()))
        }
        Backend::S3(s3) => {
            let options = ClientOptions::new()
                .with_timeout(Duration::from_secs(30))
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_http(s3.allow_http);
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            };
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_access_key_id(&s3.credentials.access_key_id)
                .with_secret_access_key(&s3.credentials.secret_access_key)
                .with_allow_http(s3.allow_http)
                .with_client_options(options)
                .with_retry(retry);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(token) = &s3.credentials.session_token {
                builder = builder.with_token(token);
            }
            let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
            let endpoint = s3.endpoint.as_deref().unwrap_or("aws");
            let (store, location): (Arc<dyn ObjectStore>, String) = match &s3.prefix {
                Some(prefix) => (
                    Arc::new(PrefixStore::new(store, prefix.as_str())),
                    format!("{endpoint}/{}/{prefix}", s3.bucket),
                ),
                None => (store, format!("{endpoint}/{}", s3.bucket)),
            };
            Ok((store, location))
        }
    }
}
