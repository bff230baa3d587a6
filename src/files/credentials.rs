//! Where file mode finds a connector's credentials: a directory laid out like a mounted
//! Secret volume, else two environment variables.

use std::path::{Path, PathBuf};

use crate::api::SecretRef;
use crate::expensify::Credentials;

/// Environment variable holding the partnerUserID when no secret file exists.
pub const ENV_USER_ID: &str = "EXPENSIFY_PARTNER_USER_ID";
/// Environment variable holding the partnerUserSecret when no secret file exists.
pub const ENV_USER_SECRET: &str = "EXPENSIFY_PARTNER_USER_SECRET";

/// How credentials are found.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// `DIR/<secret name>/<key>` when the files exist, else the environment.
    SecretsDir(Option<PathBuf>),
    /// The same pair for every connector (the demo, tests).
    Fixed(Credentials),
}

/// Why no credentials were found. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindCredentialsError {
    #[error(
        "Secret {secret:?} not found: {} and {ENV_USER_ID} / {ENV_USER_SECRET} are not both set",
        match dir {
            Some(dir) => format!("no files {dir}/{secret}/{{{id_key},{secret_key}}}"),
            None => "no --secrets-dir (EXPENSIFY_SECRETS_DIR) given".to_string(),
        }
    )]
    NotFound {
        secret: String,
        /// `--secrets-dir`, when given.
        dir: Option<String>,
        id_key: String,
        secret_key: String,
    },
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("Secret {secret:?}: {message}")]
    Invalid { secret: String, message: String },
    /// Checked before any path is built, so a name cannot reach outside `--secrets-dir`.
    #[error("credentialsSecretRef.{field}: {source}")]
    BadName {
        field: &'static str,
        #[source]
        source: crate::names::InvalidName,
    },
}

/// The Secret (a directory under `--secrets-dir`) whose file [`STATUS_KEY_FILE`] holds the
/// key that signs status files, unless `--status-key-secret` names another.
pub const STATUS_KEY_SECRET: &str = "expensify-status-key";
/// The key's file in that Secret.
pub const STATUS_KEY_FILE: &str = "key";
/// A key file larger than this is refused unread.
const MAX_STATUS_KEY_BYTES: u64 = 4096;

/// Why the status signing key could not be taken. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindStatusKeyError {
    /// Checked before any path is built, so a name cannot reach outside `--secrets-dir`.
    #[error("--status-key-secret: {0}")]
    BadName(#[source] crate::names::InvalidName),
    #[error("cannot read the status signing key {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        #[source]
        source: super::status_signing::StatusKeyError,
    },
}

/// A file of a mounted Secret, at most `max_bytes` long (a longer one is refused, not read
/// whole); `None` when there is no such file; why not otherwise (never its content).
pub(super) fn read_secret_file(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, max_bytes + 1), &mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("larger than {max_bytes} bytes"));
    }
    Ok(Some(bytes))
}

/// The key that signs status files: `DIR/<secret>/key`, when `--secrets-dir` is given and
/// the file exists.
pub fn find_status_key(
    dir: Option<&Path>,
    secret: &str,
) -> Result<Option<super::status_signing::StatusKey>, FindStatusKeyError> {
    crate::names::check_subdomain(secret).map_err(FindStatusKeyError::BadName)?;
    let Some(dir) = dir else {
        return Ok(None);
    };
    let path = dir.join(secret).join(STATUS_KEY_FILE);
    let Some(bytes) = read_secret_file(&path, MAX_STATUS_KEY_BYTES).map_err(|message| {
        FindStatusKeyError::Unreadable {
            path: path.display().to_string(),
            message,
        }
    })?
    else {
        return Ok(None);
    };
    super::status_signing::StatusKey::new(&bytes)
        .map(Some)
        .map_err(|source| FindStatusKeyError::Invalid {
            path: path.display().to_string(),
            source,
        })
}

impl CredentialSource {
    pub fn find(&self, reference: &SecretRef) -> Result<Credentials, FindCredentialsError> {
        match self {
            CredentialSource::Fixed(credentials) => Ok(credentials.clone()),
            CredentialSource::SecretsDir(dir) => {
                if let Some(dir) = dir
                    && let Some(found) = from_dir(dir, reference)?
                {
                    return Ok(found);
                }
                from_env(reference, dir.as_deref())
            }
        }
    }
}

/// The Secret name and keys follow Kubernetes rules (no `/`, no `..`).
fn check_names(reference: &SecretRef) -> Result<(), FindCredentialsError> {
    use crate::names::{check_secret_key, check_subdomain};
    let bad = |field| move |source| FindCredentialsError::BadName { field, source };
    check_subdomain(&reference.name).map_err(bad("name"))?;
    check_secret_key(&reference.user_id_key).map_err(bad("userIDKey"))?;
    check_secret_key(&reference.user_secret_key).map_err(bad("userSecretKey"))
}

fn from_dir(
    dir: &Path,
    reference: &SecretRef,
) -> Result<Option<Credentials>, FindCredentialsError> {
    check_names(reference)?;
    let secret_dir = dir.join(&reference.name);
    let id_path = secret_dir.join(&reference.user_id_key);
    let secret_path = secret_dir.join(&reference.user_secret_key);
    if !id_path.exists() && !secret_path.exists() {
        return Ok(None);
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| FindCredentialsError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let credentials = Credentials::new(read(&id_path)?, read(&secret_path)?).map_err(|e| {
        FindCredentialsError::Invalid {
            secret: reference.name.clone(),
            message: e.to_string(),
        }
    })?;
    Ok(Some(credentials))
}

fn from_env(
    reference: &SecretRef,
    dir: Option<&Path>,
) -> Result<Credentials, FindCredentialsError> {
    match (std::env::var(ENV_USER_ID), std::env::var(ENV_USER_SECRET)) {
        (Ok(id), Ok(secret)) => {
            Credentials::new(id, secret).map_err(|e| FindCredentialsError::Invalid {
                secret: reference.name.clone(),
                message: format!("from {ENV_USER_ID}/{ENV_USER_SECRET}: {e}"),
            })
        }
        _ => Err(FindCredentialsError::NotFound {
            secret: reference.name.clone(),
            dir: dir.map(|d| d.display().to_string()),
            id_key: reference.user_id_key.clone(),
            secret_key: reference.user_secret_key.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> SecretRef {
        SecretRef {
            name: "expensify-credentials".into(),
            user_id_key: "partnerUserID".into(),
            user_secret_key: "partnerUserSecret".into(),
        }
    }

    #[test]
    fn reads_a_mounted_secret_layout() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("expensify-credentials");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("partnerUserID"), "aa_id\n").unwrap();
        std::fs::write(secret.join("partnerUserSecret"), "very-secret\n").unwrap();
        let found = CredentialSource::SecretsDir(Some(dir.path().into()))
            .find(&reference())
            .unwrap();
        assert_eq!(found.partner_user_id(), "aa_id");
    }

    #[test]
    fn without_a_secrets_dir_the_error_says_so_plainly() {
        let error = from_env(&reference(), None).unwrap_err().to_string();
        assert!(
            error.contains("no --secrets-dir (EXPENSIFY_SECRETS_DIR) given")
                && !error.contains("<--"),
            "{error}"
        );
    }

    #[test]
    fn a_half_present_secret_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("expensify-credentials");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("partnerUserID"), "aa_id").unwrap();
        let err = CredentialSource::SecretsDir(Some(dir.path().into()))
            .find(&reference())
            .unwrap_err();
        assert!(err.to_string().contains("partnerUserSecret"), "{err}");
    }

    #[test]
    fn the_status_key_is_found_under_its_secret_checked_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        assert!(find_status_key(None, STATUS_KEY_SECRET).unwrap().is_none());
        assert!(
            find_status_key(Some(dir.path()), STATUS_KEY_SECRET)
                .unwrap()
                .is_none(),
            "no file, no key"
        );
        let secret = dir.path().join(STATUS_KEY_SECRET);
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join(STATUS_KEY_FILE), "too-short-a-key\n").unwrap();
        let error = find_status_key(Some(dir.path()), STATUS_KEY_SECRET).unwrap_err();
        assert!(
            matches!(error, FindStatusKeyError::Invalid { .. })
                && !error.to_string().contains("too-short"),
            "{error}"
        );
        std::fs::write(secret.join(STATUS_KEY_FILE), "k".repeat(48)).unwrap();
        assert!(
            find_status_key(Some(dir.path()), STATUS_KEY_SECRET)
                .unwrap()
                .is_some()
        );
        std::fs::write(secret.join(STATUS_KEY_FILE), "k".repeat(5000)).unwrap();
        assert!(find_status_key(Some(dir.path()), STATUS_KEY_SECRET).is_err());
        for bad in ["..", "a/b", "/etc"] {
            assert!(matches!(
                find_status_key(Some(dir.path()), bad),
                Err(FindStatusKeyError::BadName(_))
            ));
        }
    }

    #[test]
    fn names_that_would_leave_the_secrets_dir_are_refused_before_any_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let source = CredentialSource::SecretsDir(Some(dir.path().into()));
        for (name, id_key, secret_key, field) in [
            ("/etc", "partnerUserID", "os-release", "name"),
            ("..", "partnerUserID", "partnerUserSecret", "name"),
            ("ok", "../id", "partnerUserSecret", "userIDKey"),
            ("ok", "partnerUserID", "a/b", "userSecretKey"),
            ("ok", "partnerUserID", "..", "userSecretKey"),
        ] {
            let err = source
                .find(&SecretRef {
                    name: name.into(),
                    user_id_key: id_key.into(),
                    user_secret_key: secret_key.into(),
                })
                .unwrap_err();
            assert!(
                matches!(&err, FindCredentialsError::BadName { field: f, .. } if *f == field),
                "{err}"
            );
        }
    }
}
