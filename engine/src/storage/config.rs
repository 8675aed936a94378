//! The bucket registry's configuration: a TOML file, or the embedded default (one local
//! `primary` bucket inside the data directory).
//!
//! ```toml
//! [buckets.primary]
//! backend = "local"
//! root = "buckets/primary"          # relative to the data directory
//! rescue = "mirror"                 # reads fall back to it when this bucket's fail
//!
//! [buckets.mirror]
//! backend = "s3"
//! endpoint = "http://127.0.0.1:9000"
//! bucket = "annal"
//! region = "us-east-1"
//! prefix = "prod"                   # optional: keys live under it
//! allow_http = true                 # needed for an http:// endpoint
//! secrets_file = "/etc/annal/s3.toml"   # mode 0600; else AWS_ACCESS_KEY_ID, ...
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::limits::BUCKET_NAME_BYTES_MAX;

use serde::Deserialize;

/// The name of the bucket every data directory has.
pub const PRIMARY: &str = "primary";
/// Where the default primary bucket lives, relative to the data directory.
pub const DEFAULT_PRIMARY_ROOT: &str = "buckets/primary";

/// The configuration could not be used. Secrets never appear in these messages.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path} is not a valid bucket configuration")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why (the parser's message names the line).
        #[source]
        source: toml::de::Error,
    },
    /// A secrets file others can read or write.
    #[error("secrets file {path} has mode {mode:o}; it must be 600 (chmod 600 {path})")]
    SecretsMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A bad bucket name.
    #[error("bucket name {name:?} must be 1 to {BUCKET_NAME_BYTES_MAX} characters of [A-Za-z0-9_-]")]
    BadName {
        /// The name.
        name: String,
    },
    /// A field the backend needs is missing, or one it does not take is set.
    #[error("bucket {bucket:?}: {problem}")]
    Field {
        /// The bucket.
        bucket: String,
        /// What is wrong.
        problem: String,
    },
    /// An S3 bucket with no credentials configured.
    #[error(
        "bucket {bucket:?}: no S3 credentials: set secrets_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials {
        /// The bucket.
        bucket: String,
    },
    /// A rescue that names no bucket, the bucket itself, or a bucket that has a rescue.
    #[error("bucket {bucket:?}: rescue {rescue:?} {problem}")]
    Rescue {
        /// The bucket.
        bucket: String,
        /// The rescue it names.
        rescue: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// S3 credentials. Their `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, if any.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &"<redacted>").finish_non_exhaustive()
    }
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL (`None`: AWS for `region`).
    pub endpoint: Option<String>,
    /// The S3 bucket.
    pub bucket: String,
    /// Region (`us-east-1` if not set).
    pub region: String,
    /// Keys live under this prefix inside the S3 bucket.
    pub prefix: Option<String>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Credentials, from the secrets file or the environment.
    pub credentials: Credentials,
}

/// Where a bucket keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A directory; relative paths are inside the data directory.
    Local {
        /// The directory.
        root: PathBuf,
    },
    /// An S3-compatible object store.
    S3(S3Config),
}

impl Backend {
    /// `local` or `s3`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::S3(_) => "s3",
        }
    }
}

/// One bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// Where its objects are.
    pub backend: Backend,
    /// The bucket reads fall back to when a read from this one fails.
    pub rescue: Option<String>,
}

/// Every bucket of a data directory, by name; always has [`PRIMARY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketsConfig {
    /// The buckets.
    pub buckets: BTreeMap<String, BucketConfig>,
}

impl Default for BucketsConfig {
    /// The embedded default: a local `primary` bucket in `<data>/buckets/primary`.
    fn default() -> Self {
        let primary = BucketConfig {
            backend: Backend::Local { root: PathBuf::from(DEFAULT_PRIMARY_ROOT) },
            rescue: None,
        };
        Self { buckets: BTreeMap::from([(PRIMARY.to_owned(), primary)]) }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    buckets: BTreeMap<String, BucketSpec>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BackendKind {
    Local,
    S3,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketSpec {
    backend: BackendKind,
    root: Option<PathBuf>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    allow_http: Option<bool>,
    secrets_file: Option<PathBuf>,
    rescue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSpec {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl BucketsConfig {
    /// Whether bucket `name` is configured as an S3 bucket (one several nodes can
    /// share), not a local directory.
    pub fn is_s3(&self, name: &str) -> bool {
        self.buckets.get(name).is_some_and(|bucket| matches!(bucket.backend, Backend::S3(_)))
    }

    /// Read the configuration file at `path`; S3 credentials come from each bucket's
    /// `secrets_file` or else from `env` (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`). Without a `primary` entry the default primary is added.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or the bucket.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path, env)
    }

    /// As [`BucketsConfig::load`], from the text of a file at `path`.
    ///
    /// # Errors
    /// As [`BucketsConfig::load`].
    pub fn parse(text: &str, path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let spec: FileSpec =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        let mut config = Self::default();
        if spec.buckets.contains_key(PRIMARY) {
            config.buckets.clear();
        }
        for (name, bucket) in spec.buckets {
            check_name(&name)?;
            let built = build(&name, bucket, &env)?;
            config.buckets.insert(name, built);
        }
        config.check_rescues()?;
        Ok(config)
    }

    fn check_rescues(&self) -> Result<(), ConfigError> {
        for (name, bucket) in &self.buckets {
            let Some(rescue) = &bucket.rescue else { continue };
            let problem =
                |problem| ConfigError::Rescue { bucket: name.clone(), rescue: rescue.clone(), problem };
            if rescue == name {
                return Err(problem("is the bucket itself"));
            }
            match self.buckets.get(rescue) {
                None => return Err(problem("is not a configured bucket")),
                // One fallback per read: a chain would hide how many buckets failed.
                Some(r) if r.rescue.is_some() => return Err(problem("has a rescue of its own")),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= BUCKET_NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadName { name: name.to_owned() })
    }
}

fn build(
    name: &str,
    spec: BucketSpec,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BucketConfig, ConfigError> {
    let field = |problem: String| ConfigError::Field { bucket: name.to_owned(), problem };
    let backend = match spec.backend {
        BackendKind::Local => {
            let s3_only = [
                ("endpoint", spec.endpoint.is_some()),
                ("bucket", spec.bucket.is_some()),
                ("region", spec.region.is_some()),
                ("prefix", spec.prefix.is_some()),
                ("allow_http", spec.allow_http.is_some()),
                ("secrets_file", spec.secrets_file.is_some()),
            ];
            if let Some((f, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err(field(format!("{f} is for s3 buckets, not local ones")));
            }
            Backend::Local { root: spec.root.ok_or_else(|| field("a local bucket needs root".into()))? }
        }
        BackendKind::S3 => {
            if spec.root.is_some() {
                return Err(field("root is for local buckets; s3 buckets take bucket and prefix".into()));
            }
            let bucket = spec.bucket.ok_or_else(|| field("an s3 bucket needs bucket".into()))?;
            let allow_http = spec.allow_http.unwrap_or(false);
            if let Some(endpoint) = &spec.endpoint {
                if endpoint.starts_with("http://") && !allow_http {
                    return Err(field(format!("endpoint {endpoint} is plain http; set allow_http = true")));
                }
            }
            let credentials = match &spec.secrets_file {
                Some(path) => read_secrets(path)?,
                None => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                    (Some(access_key_id), Some(secret_access_key)) => Credentials {
                        access_key_id,
                        secret_access_key,
                        session_token: env("AWS_SESSION_TOKEN"),
                    },
                    _ => return Err(ConfigError::NoCredentials { bucket: name.to_owned() }),
                },
            };
            Backend::S3(S3Config {
                endpoint: spec.endpoint,
                bucket,
                region: spec.region.unwrap_or_else(|| "us-east-1".to_owned()),
                prefix: spec.prefix,
                allow_http,
                credentials,
            })
        }
    };
    Ok(BucketConfig { backend, rescue: spec.rescue })
}

/// Read a secrets file (TOML: `access_key_id`, `secret_access_key`, `session_token`),
/// refusing one that group or others may read or write.
fn read_secrets(path: &Path) -> Result<Credentials, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |source| ConfigError::Read { path: path.to_owned(), source };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretsMode { path: path.to_owned(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    // The parser's message quotes the offending line, which may hold a secret: keep
    // only where it is.
    let spec: SecretsSpec = toml::from_str(&text).map_err(|e| ConfigError::Field {
        bucket: String::new(),
        problem: format!(
            "secrets file {} is not TOML with access_key_id and secret_access_key (at bytes {:?})",
            path.display(),
            e.span()
        ),
    })?;
    Ok(Credentials {
        access_key_id: spec.access_key_id,
        secret_access_key: spec.secret_access_key,
        session_token: spec.session_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn an_empty_file_is_the_default_primary() {
        let config = BucketsConfig::parse("", Path::new("b.toml"), no_env).unwrap();
        assert_eq!(config, BucketsConfig::default());
    }

    #[test]
    fn an_s3_bucket_takes_credentials_from_the_environment_and_hides_them() {
        let text = r#"
            [buckets.archive]
            backend = "s3"
            endpoint = "http://127.0.0.1:9000"
            bucket = "annal"
            allow_http = true
            rescue = "primary"
        "#;
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("s3cr3t-v4lue".to_owned()),
            _ => None,
        };
        let config = BucketsConfig::parse(text, Path::new("b.toml"), env).unwrap();
        assert_eq!(config.buckets.len(), 2);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("AKIDEXAMPLE"), "{shown}");
        let err = BucketsConfig::parse(text, Path::new("b.toml"), no_env).unwrap_err();
        assert!(matches!(err, ConfigError::NoCredentials { .. }), "{err}");
    }

    #[test]
    fn bad_configurations_are_refused_naming_the_bucket() {
        let cases = [
            ("[buckets.a]\nbackend = \"local\"\n", "needs root"),
            ("[buckets.a]\nbackend = \"local\"\nroot = \"x\"\nrescue = \"a\"\n", "itself"),
            ("[buckets.a]\nbackend = \"local\"\nroot = \"x\"\nrescue = \"nope\"\n", "not a configured"),
            ("[buckets.a]\nbackend = \"local\"\nroot = \"x\"\nbucket = \"y\"\n", "for s3 buckets"),
            ("[buckets.\"a/b\"]\nbackend = \"local\"\nroot = \"x\"\n", "[A-Za-z0-9_-]"),
            ("[buckets.a]\nbackend = \"ftp\"\n", "not a valid bucket configuration"),
        ];
        for (text, expected) in cases {
            let err = BucketsConfig::parse(text, Path::new("b.toml"), no_env).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn a_secrets_file_others_can_read_is_refused_by_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("s3.toml");
        std::fs::write(&secrets, "access_key_id = \"a\"\nsecret_access_key = \"hush\"\n").unwrap();
        let text = format!(
            "[buckets.s]\nbackend = \"s3\"\nbucket = \"b\"\nsecrets_file = \"{}\"\n",
            secrets.display()
        );
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = BucketsConfig::parse(&text, Path::new("b.toml"), no_env).unwrap_err();
        assert!(err.to_string().contains(&secrets.display().to_string()), "{err}");
        assert!(err.to_string().contains("644"), "{err}");
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = BucketsConfig::parse(&text, Path::new("b.toml"), no_env).unwrap();
        let Backend::S3(s3) = &config.buckets["s"].backend else { panic!("not s3") };
        assert_eq!(s3.credentials.secret_access_key, "hush");
    }
}
