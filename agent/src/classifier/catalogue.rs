//! The application catalogue: domain suffixes and address ranges → application → default
//! class, and the class of each protocol DPI can name. Data, not code: it lives in
//! `agent/catalogue/apps.yaml` (embedded at build time) and an operator may load another.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;
use serde::Deserialize;

use super::dpi::protocol::Protocol;

/// The catalogue shipped with the agent.
pub const BUILTIN_YAML: &str = include_str!("../../catalogue/apps.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    classes: Vec<String>,
    default_class: String,
    media_protocols: Vec<String>,
    protocols: BTreeMap<String, String>,
    apps: Vec<AppFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppFile {
    name: String,
    class: String,
    #[serde(default)]
    media_class: Option<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    prefixes: Vec<IpNet>,
    /// Certificate subject names that are not host names ("AnyDesk Client").
    #[serde(default)]
    certificate_names: Vec<String>,
}

/// One application the classifier can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub class: String,
    /// Class of the application's real-time media, when different from `class`.
    pub media_class: Option<String>,
}

/// Why a catalogue was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue is not valid YAML for its schema: {0}")]
    Syntax(String),
    #[error("{what} names class `{class}`, which is not in `classes`")]
    UnknownClass { what: String, class: String },
    #[error("protocol `{0}` in `protocols` is not one the classifier knows")]
    UnknownProtocol(String),
    #[error("protocol `{0}` has no class in `protocols`")]
    MissingProtocol(&'static str),
    #[error("application `{0}` is listed twice")]
    DuplicateApp(String),
}

/// The loaded catalogue with its lookup tables.
#[derive(Debug, Clone)]
pub struct Catalogue {
    classes: Vec<String>,
    default_class: String,
    apps: Vec<App>,
    by_name: HashMap<String, usize>,
    /// Domain suffix → app index.
    domains: HashMap<String, usize>,
    /// Prefixes, most specific first.
    prefixes: Vec<(IpNet, usize)>,
    /// The same, indexed: per prefix length (longest first), network address → app.
    v4_index: Vec<(u8, HashMap<u32, usize>)>,
    v6_index: Vec<(u8, HashMap<u128, usize>)>,
    protocol_class: HashMap<Protocol, String>,
    media_protocols: Vec<Protocol>,
}

impl Catalogue {
    /// The built-in catalogue (checked by the test suite, so it always loads).
    pub fn builtin() -> &'static Catalogue {
        static BUILTIN: OnceLock<Catalogue> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Catalogue::from_yaml(BUILTIN_YAML).expect("the built-in catalogue is checked by tests")
        })
    }

    /// Loads and checks a catalogue.
    pub fn from_yaml(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile =
            yaml_serde::from_str(text).map_err(|e| CatalogueError::Syntax(e.to_string()))?;
        let known = |what: String, class: &str| {
            if file.classes.iter().any(|c| c == class) {
                Ok(())
            } else {
                Err(CatalogueError::UnknownClass {
                    what,
                    class: class.to_owned(),
                })
            }
        };
        known("default_class".into(), &file.default_class)?;
        let mut protocol_class = HashMap::new();
        for (name, class) in &file.protocols {
            let protocol = Protocol::from_name(name)
                .ok_or_else(|| CatalogueError::UnknownProtocol(name.clone()))?;
            known(format!("protocol `{name}`"), class)?;
            protocol_class.insert(protocol, class.clone());
        }
        if let Some(missing) = Protocol::ALL
            .iter()
            .find(|p| !protocol_class.contains_key(p))
        {
            return Err(CatalogueError::MissingProtocol(missing.name()));
        }
        let media_protocols = file
            .media_protocols
            .iter()
            .map(|name| {
                Protocol::from_name(name)
                    .ok_or_else(|| CatalogueError::UnknownProtocol(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut catalogue = Catalogue {
            classes: file.classes.clone(),
            default_class: file.default_class.clone(),
            apps: Vec::new(),
            by_name: HashMap::new(),
            domains: HashMap::new(),
            prefixes: Vec::new(),
            v4_index: Vec::new(),
            v6_index: Vec::new(),
            protocol_class,
            media_protocols,
        };
        for app in file.apps {
            known(format!("application `{}`", app.name), &app.class)?;
            if let Some(media) = &app.media_class {
                known(format!("application `{}` media", app.name), media)?;
            }
            let index = catalogue.apps.len();
            if catalogue.by_name.insert(app.name.clone(), index).is_some() {
                return Err(CatalogueError::DuplicateApp(app.name));
            }
            for domain in app.domains {
                catalogue
                    .domains
                    .insert(domain.trim_matches('.').to_ascii_lowercase(), index);
            }
            for name in app.certificate_names {
                catalogue.domains.insert(name.to_ascii_lowercase(), index);
            }
            for prefix in app.prefixes {
                catalogue.prefixes.push((prefix.trunc(), index));
            }
            catalogue.apps.push(App {
                name: app.name,
                class: app.class,
                media_class: app.media_class,
            });
        }
        catalogue
            .prefixes
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        for (net, index) in &catalogue.prefixes {
            match net {
                IpNet::V4(v4) => {
                    let len = v4.prefix_len();
                    if catalogue.v4_index.last().is_none_or(|(l, _)| *l != len) {
                        catalogue.v4_index.push((len, HashMap::new()));
                    }
                    let table = &mut catalogue.v4_index.last_mut().expect("just pushed").1;
                    table.entry(u32::from(v4.network())).or_insert(*index);
                }
                IpNet::V6(v6) => {
                    let len = v6.prefix_len();
                    if catalogue.v6_index.last().is_none_or(|(l, _)| *l != len) {
                        catalogue.v6_index.push((len, HashMap::new()));
                    }
                    let table = &mut catalogue.v6_index.last_mut().expect("just pushed").1;
                    table.entry(u128::from(v6.network())).or_insert(*index);
                }
            }
        }
        Ok(catalogue)
    }

    /// The class names this catalogue uses.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The class of traffic nothing recognised.
    pub fn default_class(&self) -> &str {
        &self.default_class
    }

    /// Every application name, for checking policies against the catalogue.
    pub fn app_names(&self) -> Vec<String> {
        self.apps.iter().map(|app| app.name.clone()).collect()
    }

    pub fn app(&self, name: &str) -> Option<&App> {
        self.by_name.get(name).map(|&i| &self.apps[i])
    }

    /// The application whose longest domain suffix matches `host`.
    pub fn app_for_domain(&self, host: &str) -> Option<&App> {
        let mut rest = host;
        loop {
            if let Some(&index) = self.domains.get(rest) {
                return Some(&self.apps[index]);
            }
            let (_, parent) = rest.split_once('.')?;
            rest = parent;
        }
    }

    /// The application whose most specific address range holds `addr`.
    pub fn app_for_address(&self, addr: IpAddr) -> Option<&App> {
        let index = match addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4_index.iter().find_map(|(len, table)| {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                    table.get(&(bits & mask))
                })
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6_index.iter().find_map(|(len, table)| {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
                    table.get(&(bits & mask))
                })
            }
        };
        index.map(|i| &self.apps[*i])
    }

    /// The class of a protocol when no application is known.
    pub fn protocol_class(&self, protocol: Protocol) -> &str {
        self.protocol_class
            .get(&protocol)
            .map_or(self.default_class.as_str(), String::as_str)
    }

    /// True for protocols that carry real-time media (an app's `media_class` applies).
    pub fn is_media(&self, protocol: Protocol) -> bool {
        self.media_protocols.contains(&protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalogue_loads_and_covers_every_protocol() {
        let catalogue = Catalogue::from_yaml(BUILTIN_YAML).unwrap();
        for protocol in Protocol::ALL {
            assert!(
                catalogue
                    .classes()
                    .iter()
                    .any(|c| c == catalogue.protocol_class(*protocol))
            );
        }
        for app in [
            "teams",
            "zoom",
            "webex",
            "salesforce",
            "google-workspace",
            "citrix",
            "bloomberg",
            "reuters",
            "netflix",
            "youtube",
            "windows-update",
            "apple-update",
        ] {
            assert!(catalogue.app(app).is_some(), "{app} missing");
        }
    }

    #[test]
    fn longest_domain_suffix_wins() {
        let catalogue = Catalogue::builtin();
        assert_eq!(
            catalogue
                .app_for_domain("eu.teams.microsoft.com")
                .unwrap()
                .name,
            "teams"
        );
        assert_eq!(
            catalogue.app_for_domain("www.microsoft.com").unwrap().name,
            "microsoft-365"
        );
        assert_eq!(
            catalogue
                .app_for_domain("download.windowsupdate.com")
                .unwrap()
                .name,
            "windows-update"
        );
        assert_eq!(
            catalogue
                .app_for_domain("r4---sn-a.googlevideo.com")
                .unwrap()
                .class,
            "streaming"
        );
        assert!(catalogue.app_for_domain("example.org").is_none());
        assert!(catalogue.app_for_domain("notzoom.us.example").is_none());
    }

    #[test]
    fn address_ranges_name_apps() {
        let catalogue = Catalogue::builtin();
        let webex: IpAddr = "64.68.105.103".parse().unwrap();
        assert_eq!(catalogue.app_for_address(webex).unwrap().name, "webex");
        let nowhere: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(catalogue.app_for_address(nowhere).is_none());
        // The index agrees with a plain scan over the prefixes.
        for probe in [
            "13.107.6.152",
            "13.107.6.153",
            "13.107.6.154",
            "52.113.194.132",
            "2a00:1450:4007:805::2002",
            "2603:1063::1",
            "8.8.8.8",
        ] {
            let addr: IpAddr = probe.parse().unwrap();
            let scan = catalogue
                .prefixes
                .iter()
                .find(|(net, _)| net.contains(&addr))
                .map(|(_, i)| catalogue.apps[*i].name.as_str());
            assert_eq!(
                catalogue.app_for_address(addr).map(|a| a.name.as_str()),
                scan,
                "{probe}"
            );
        }
    }

    #[test]
    fn a_catalogue_with_an_unknown_class_is_refused() {
        let bad = BUILTIN_YAML.replace(
            "class: bulk\n    domains: [dropbox.com",
            "class: bulky\n    domains: [dropbox.com",
        );
        let error = Catalogue::from_yaml(&bad).unwrap_err().to_string();
        assert!(error.contains("bulky"), "{error}");
    }
}
