//! Who may talk to the controller: per-site agent tokens and API tokens with a role.
//!
//! Tokens live in a YAML file the operator owns (or the controller generates into its state
//! directory). A file that group or others can read is refused: the tokens are the keys to
//! the network. A presented token is looked up by its SHA-256 digest and then compared in
//! constant time: the lookup's timing can only reveal something about the digest of what
//! the caller sent, which does not help guess a real token, and the cost stays flat with
//! ten thousand sites (comparing against every token would be O(sites) per request).
//!
//! ```yaml
//! agents:                       # one per site; the agent sends it as `Authorization: Bearer …`
//!   - { site: branch-1, token: 3f9c…, revoked: false }
//! api:                          # REST API users; viewer reads, admin also changes the policy
//!   - { name: alice, role: admin, token: 8e21… }
//!   - { name: grafana, role: viewer, token: 77ab… }
//! ```

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads everything and changes the policy.
    Admin,
}

/// The tokens file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    #[serde(default)]
    pub agents: Vec<AgentToken>,
    #[serde(default)]
    pub api: Vec<ApiToken>,
}

/// One site's agent token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentToken {
    pub site: String,
    pub token: String,
    #[serde(default)]
    pub revoked: bool,
}

/// One API user's token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub token: String,
    #[serde(default)]
    pub revoked: bool,
}

impl fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentToken")
            .field("site", &self.site)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// Why a tokens file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "tokens file {path} is accessible by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("tokens file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot write tokens file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Tokens shorter than this are refused: they could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

impl TokensFile {
    /// Reads and checks a tokens file; refuses one that group or others may access.
    pub fn load(path: &Path) -> Result<TokensFile, TokensError> {
        let shown = path.display().to_string();
        let meta = fs::metadata(path).map_err(|source| TokensError::Read {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokensError::TooOpen { path: shown, mode });
        }
        let text = fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: TokensFile = yaml_serde::from_str(&text).map_err(|e| TokensError::Invalid {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        file.validate().map_err(|message| TokensError::Invalid {
            path: shown,
            message,
        })?;
        Ok(file)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        let all = self
            .agents
            .iter()
            .map(|a| (format!("agent token of site {}", a.site), &a.token))
            .chain(
                self.api
                    .iter()
                    .map(|a| (format!("api token {}", a.name), &a.token)),
            );
        for (what, token) in all {
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "{what} is shorter than {MIN_TOKEN_LEN} characters; generate one with `openssl rand -hex 32`"
                ));
            }
            if !seen.insert(token.clone()) {
                return Err(format!("{what} is used twice; every token must be unique"));
            }
        }
        Ok(())
    }

    /// Adds a fresh token for every site that has none; returns the sites added.
    pub fn add_missing_sites<'a>(
        &mut self,
        sites: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut added = Vec::new();
        // A set, not a scan per site: ten thousand sites would be 10^8 comparisons.
        let mut have: std::collections::HashSet<String> =
            self.agents.iter().map(|a| a.site.clone()).collect();
        for site in sites {
            if have.insert(site.to_string()) {
                self.agents.push(AgentToken {
                    site: site.to_string(),
                    token: fresh_token(),
                    revoked: false,
                });
                added.push(site.to_string());
            }
        }
        added
    }

    /// A new file with one agent token per site, an `admin` and a `viewer` API token.
    pub fn generate<'a>(sites: impl IntoIterator<Item = &'a str>) -> TokensFile {
        let mut file = TokensFile {
            agents: Vec::new(),
            api: vec![
                ApiToken {
                    name: "admin".into(),
                    role: Role::Admin,
                    token: fresh_token(),
                    revoked: false,
                },
                ApiToken {
                    name: "viewer".into(),
                    role: Role::Viewer,
                    token: fresh_token(),
                    revoked: false,
                },
            ],
        };
        file.add_missing_sites(sites);
        file
    }

    /// Writes the file with mode 0600 (created so; never briefly world-readable).
    pub fn save(&self, path: &Path) -> Result<(), TokensError> {
        let shown = path.display().to_string();
        let write_err = |source| TokensError::Write {
            path: shown.clone(),
            source,
        };
        let text = format!(
            "# wansteer tokens: keep this file mode 0600.\n{}",
            yaml_serde::to_string(self).expect("tokens always serialise")
        );
        let tmp = path.with_extension("tmp");
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        out.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
        out.write_all(text.as_bytes()).map_err(write_err)?;
        out.sync_all().map_err(write_err)?;
        fs::rename(&tmp, path).map_err(write_err)?;
        Ok(())
    }
}

/// A random 256-bit token, hex.
pub fn fresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Who presented a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The agent of this site.
    Agent { site: String },
    /// An API user.
    User { name: String, role: Role },
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token we know.
    Unknown,
    /// A token we know, revoked.
    Revoked,
    /// An agent token of a site the policy in force does not have (removed, or not added
    /// yet).
    SiteNotInPolicy,
}

impl Refusal {
    /// In words for logs, metrics labels and the 401 body.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Revoked => "revoked",
            Refusal::SiteNotInPolicy => "site_not_in_policy",
        }
    }
}

/// Where the controller's tokens come from, and so what a reload does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Only the tokens given at start (tests, embedding); a reload re-applies the policy's
    /// sites to them.
    Given,
    /// The operator's file (`--tokens FILE`): re-read on reload (SIGHUP, policy apply). The
    /// controller never writes it; a site added by a policy needs its token added here.
    File(std::path::PathBuf),
    /// Generated into the state directory: a site a policy adds gets a fresh token written
    /// into the file (mode 0600) at once; edits to the file (e.g. `revoked: true`) are
    /// read on reload.
    Generated(std::path::PathBuf),
}

/// Token lookup built from a [`TokensFile`].
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// SHA-256 of the token → (token, owner, revoked).
    entries: std::collections::HashMap<[u8; 32], (Vec<u8>, Principal, bool)>,
    /// When set, agent tokens of sites outside it are refused.
    sites: Option<std::collections::BTreeSet<String>>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token).into()
}

impl Authenticator {
    pub fn new(file: &TokensFile) -> Self {
        let agents = file.agents.iter().map(|a| {
            (
                a.token.as_bytes().to_vec(),
                Principal::Agent {
                    site: a.site.clone(),
                },
                a.revoked,
            )
        });
        let users = file.api.iter().map(|u| {
            (
                u.token.as_bytes().to_vec(),
                Principal::User {
                    name: u.name.clone(),
                    role: u.role,
                },
                u.revoked,
            )
        });
        Authenticator {
            entries: agents
                .chain(users)
                .map(|entry| (digest(&entry.0), entry))
                .collect(),
            sites: None,
        }
    }

    /// Like [`Authenticator::new`], but agent tokens open sessions only for these sites
    /// (the policy's): a site removed from the policy is locked out with its token.
    pub fn for_sites<'a>(file: &TokensFile, sites: impl IntoIterator<Item = &'a str>) -> Self {
        let mut auth = Authenticator::new(file);
        auth.sites = Some(sites.into_iter().map(str::to_string).collect());
        auth
    }

    /// Finds who a bearer token belongs to: lookup by digest, then a constant-time compare
    /// of the token itself (see the module comment for why this leaks nothing useful).
    pub fn identify(&self, token: &str) -> Result<Principal, Refusal> {
        let presented = token.as_bytes();
        let found = self
            .entries
            .get(&digest(presented))
            .filter(|entry| bool::from(entry.0.as_slice().ct_eq(presented)));
        match found {
            None => Err(Refusal::Unknown),
            Some((_, _, true)) => Err(Refusal::Revoked),
            Some((_, Principal::Agent { site }, false))
                if self
                    .sites
                    .as_ref()
                    .is_some_and(|sites| !sites.contains(site)) =>
            {
                Err(Refusal::SiteNotInPolicy)
            }
            Some((_, principal, false)) => Ok(principal.clone()),
        }
    }

    /// Parses an `Authorization` header value and identifies its bearer token.
    pub fn identify_header(&self, header: Option<&str>) -> Result<Principal, Refusal> {
        let token = header
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(Refusal::Missing)?;
        self.identify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> TokensFile {
        let mut file = TokensFile::generate(["branch-1", "hub"]);
        file.agents[1].revoked = true;
        file
    }

    #[test]
    fn tokens_identify_their_owner_and_revoked_ones_are_refused() {
        let file = file();
        let auth = Authenticator::new(&file);
        assert_eq!(
            auth.identify(&file.agents[0].token),
            Ok(Principal::Agent {
                site: "branch-1".into()
            })
        );
        assert_eq!(auth.identify(&file.agents[1].token), Err(Refusal::Revoked));
        assert_eq!(
            auth.identify(&file.api[0].token),
            Ok(Principal::User {
                name: "admin".into(),
                role: Role::Admin
            })
        );
        assert_eq!(auth.identify("nope"), Err(Refusal::Unknown));
        let only_hub = Authenticator::for_sites(&file, ["hub"]);
        assert_eq!(
            only_hub.identify(&file.agents[0].token),
            Err(Refusal::SiteNotInPolicy),
            "a site outside the policy is locked out"
        );
        let prefix = &file.api[1].token[..20];
        assert_eq!(auth.identify(prefix), Err(Refusal::Unknown));
        assert_eq!(auth.identify_header(None), Err(Refusal::Missing));
        assert_eq!(
            auth.identify_header(Some(&format!("Basic {}", file.api[1].token))),
            Err(Refusal::Missing)
        );
    }

    #[test]
    fn saved_file_is_private_and_a_readable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let file = file();
        file.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(TokensFile::load(&path).unwrap(), file);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = TokensFile::load(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn short_and_duplicate_tokens_are_refused() {
        let mut file = file();
        file.api[1].token = file.api[0].token.clone();
        assert!(file.validate().unwrap_err().contains("used twice"));
        file.api[1].token = "short".into();
        assert!(file.validate().unwrap_err().contains("shorter"));
    }
}
