//! The rules that tie a policy together, checked on the parsed model: names are unique
//! and resolve, shares add up, every class has somewhere to go, SLAs are reachable, match
//! rules do not hide each other, timers make sense.
//!
//! Pure: a policy in, findings out. Each finding names the YAML path it is about
//! (`classes[2].steering.never[0]`); the caller turns paths into `line:column`.
//!
//! What "an SLA no line can meet" means here, statically (the policy holds no measured
//! figures): a loss bound of 0% (one lost probe breaks it), a jitter bound of 0, and a
//! latency bound below the floor of every line the class may use, with floors per transport
//! from [`latency_floor`]. A loss bound so tight that proving a line meets it takes more than
//! ten minutes of probes is a warning.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use ipnet::IpNet;

use crate::check::Severity;
use crate::model::{Class, Line, MatchRule, Policy, Transport};
use crate::suggest;
use crate::units::{Dscp, Span};

/// One finding about the policy, located by YAML path.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub path: String,
    /// Other paths the finding depends on (if one of them was broken, the finding is moot).
    pub related: Vec<String>,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
}

/// Gives the line a path was written on, for hints like "the first is on line 12".
pub trait Locate {
    fn line_of(&self, path: &str) -> usize;
}

/// The lowest one-way latency a line of this transport can plausibly deliver. MPLS in a
/// metro area is about a millisecond; broadband access adds a few; LTE's radio scheduling
/// alone takes ~10 ms; low-orbit satellite ~20 ms (geostationary is far worse).
pub fn latency_floor(transport: Transport) -> Duration {
    Duration::from_millis(match transport {
        Transport::Mpls => 1,
        Transport::Internet => 2,
        Transport::Lte => 10,
        Transport::Satellite => 20,
    })
}

/// Longest time we accept for proving a line meets a loss bound before warning.
const LOSS_PROOF_LIMIT: Duration = Duration::from_secs(600);

/// Finds every semantic problem in a policy.
/// `known_apps` is the classifier's catalogue, when the caller has it.
pub fn validate(
    policy: &Policy,
    locate: &dyn Locate,
    known_apps: Option<&[String]>,
) -> Vec<Finding> {
    let mut checker = Checker {
        policy,
        locate,
        known_apps,
        site_names: policy.sites.iter().map(|site| site.name.as_str()).collect(),
        findings: Vec::new(),
    };
    checker.sites();
    checker.classes();
    checker.steering();
    checker.slas();
    checker.bandwidth();
    checker.shadowing();
    checker.timers();
    checker.findings
}

struct Checker<'a> {
    policy: &'a Policy,
    locate: &'a dyn Locate,
    known_apps: Option<&'a [String]>,
    /// Every site's name, for lines that name the site they reach (one lookup per line,
    /// not a scan of every site: a hub with a line per branch made that quadratic).
    site_names: HashSet<&'a str>,
    findings: Vec<Finding>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_app(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn valid_domain(domain: &str) -> bool {
    let domain = domain.strip_prefix('.').unwrap_or(domain);
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `a, b, c and 4 more`.
fn few(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    if names.len() > 3 {
        format!("{} and {} more", shown.join(", "), names.len() - 3)
    } else {
        suggest::list(&shown)
    }
}

impl Checker<'_> {
    fn push(
        &mut self,
        severity: Severity,
        path: String,
        related: Vec<String>,
        message: String,
        hint: Option<String>,
    ) {
        self.findings.push(Finding {
            path,
            related,
            severity,
            message,
            hint,
        });
    }

    fn error(&mut self, path: String, message: String, hint: impl Into<Option<String>>) {
        self.push(Severity::Error, path, Vec::new(), message, hint.into());
    }

    fn warning(&mut self, path: String, message: String, hint: impl Into<Option<String>>) {
        self.push(Severity::Warning, path, Vec::new(), message, hint.into());
    }

    fn name(&mut self, path: String, noun: &str, name: &str) {
        if !valid_name(name) {
            self.error(
                path,
                format!("{noun} name `{name}` is not a plain name"),
                "use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
                    .to_string(),
            );
        }
    }

    /// Reports later entries whose key repeats an earlier one.
    fn duplicates<'k>(
        &mut self,
        entries: impl IntoIterator<Item = (String, &'k str)>,
        what: impl Fn(&str) -> String,
    ) {
        let mut first: BTreeMap<&str, String> = BTreeMap::new();
        for (path, key) in entries {
            if key.is_empty() {
                continue;
            }
            match first.get(key) {
                Some(first_path) => {
                    let line = self.locate.line_of(first_path);
                    let related = vec![first_path.clone()];
                    self.push(
                        Severity::Error,
                        path,
                        related,
                        what(key),
                        Some(format!("the first is on line {line}; names must be unique")),
                    );
                }
                None => {
                    first.insert(key, path);
                }
            }
        }
    }

    fn sites(&mut self) {
        let policy = self.policy;
        if policy.sites.is_empty() {
            self.error(
                "sites".into(),
                "the policy has no sites".into(),
                "add at least one site with its WAN lines".to_string(),
            );
        }
        self.duplicates(
            policy
                .sites
                .iter()
                .enumerate()
                .map(|(i, site)| (format!("sites[{i}].name"), site.name.as_str())),
            |name| format!("site `{name}` is defined twice"),
        );
        let mut lans: Vec<(IpNet, String, &str)> = Vec::new();
        for (s, site) in policy.sites.iter().enumerate() {
            self.name(format!("sites[{s}].name"), "site", &site.name);
            if site.lines.is_empty() {
                self.error(
                    format!("sites[{s}].lines"),
                    format!("site `{}` has no WAN lines", site.name),
                    "list at least one line; traffic has no way out otherwise".to_string(),
                );
            }
            self.duplicates(
                site.lines
                    .iter()
                    .enumerate()
                    .map(|(l, line)| (format!("sites[{s}].lines[{l}].name"), line.name.as_str())),
                |name| format!("site `{}` has two lines named `{name}`", site.name),
            );
            self.duplicates(
                site.lines.iter().enumerate().map(|(l, line)| {
                    (
                        format!("sites[{s}].lines[{l}].interface"),
                        line.interface.as_str(),
                    )
                }),
                |name| format!("site `{}` has two lines on interface `{name}`", site.name),
            );
            for (l, line) in site.lines.iter().enumerate() {
                self.line(s, l, &site.name, line);
            }
            for (p, lan) in site.lan.iter().enumerate() {
                let path = format!("sites[{s}].lan[{p}]");
                if lan.trunc() != *lan {
                    self.warning(
                        path.clone(),
                        format!("LAN `{lan}` has host bits set; it means `{}`", lan.trunc()),
                        format!("write `{}`", lan.trunc()),
                    );
                }
                lans.push((lan.trunc(), path, site.name.as_str()));
            }
        }
        self.lan_overlaps(&lans);
    }

    /// Reports LANs that overlap an earlier one: an error across sites (a destination
    /// must belong to one site), a warning within one. Sorted sweep, so 10,000 sites cost
    /// milliseconds: after sorting by address then length, a prefix can only lie inside
    /// one still on the stack of enclosing prefixes.
    fn lan_overlaps(&mut self, lans: &[(IpNet, String, &str)]) {
        let mut order: Vec<usize> = (0..lans.len()).collect();
        order.sort_by_key(|&i| {
            let lan = lans[i].0;
            (lan.addr().is_ipv6(), lan.network(), lan.prefix_len(), i)
        });
        let mut stack: Vec<usize> = Vec::new();
        let mut reported: BTreeSet<usize> = BTreeSet::new();
        for i in order {
            while let Some(&top) = stack.last() {
                if lans[top].0.contains(&lans[i].0.network()) {
                    break;
                }
                stack.pop();
            }
            if let Some(&outer) = stack.last() {
                // Report at whichever of the two was written later.
                let (first, later) = (outer.min(i), outer.max(i));
                if reported.insert(later) {
                    let (lan, path, site) = &lans[later];
                    let (other, other_path, other_site) = &lans[first];
                    let (message, severity) = if site == other_site {
                        (
                            format!("LAN `{lan}` overlaps `{other}` of the same site"),
                            Severity::Warning,
                        )
                    } else {
                        (
                            format!(
                                "LAN `{lan}` of site `{site}` overlaps `{other}` of site `{other_site}`"
                            ),
                            Severity::Error,
                        )
                    };
                    let line = self.locate.line_of(other_path);
                    let hint = if severity == Severity::Warning {
                        format!("`{lan}` and `{other}` (line {line}) overlap; keep the wider one")
                    } else {
                        format!(
                            "each destination must belong to one site; `{other}` is on line {line}"
                        )
                    };
                    self.push(
                        severity,
                        path.clone(),
                        vec![other_path.clone()],
                        message,
                        Some(hint),
                    );
                }
            }
            stack.push(i);
        }
    }

    fn line(&mut self, s: usize, l: usize, site: &str, line: &Line) {
        let path = format!("sites[{s}].lines[{l}]");
        self.name(format!("{path}.name"), "line", &line.name);
        if let Some(reaches) = &line.site {
            if !self.site_names.contains(reaches.as_str()) {
                let names: Vec<&str> = self.policy.sites.iter().map(|s| s.name.as_str()).collect();
                let hint = match crate::suggest::closest(reaches, names.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("write one of {}", crate::suggest::list(&names)),
                };
                self.error(
                    format!("{path}.site"),
                    format!(
                        "line `{}` of site `{site}` reaches site `{reaches}`, which the policy does not have",
                        line.name
                    ),
                    hint,
                );
            } else if reaches == site {
                self.error(
                    format!("{path}.site"),
                    format!("line `{}` of site `{site}` reaches its own site", line.name),
                    "name the far site this line leads to".to_string(),
                );
            }
        }
        if let Some(reflector) = line.reflector
            && reflector.address.is_unspecified()
        {
            self.error(
                format!("{path}.reflector"),
                format!(
                    "line `{}` of site `{site}` sends its probes to {}, which is no host",
                    line.name, reflector
                ),
                "write the far reflector's address, e.g. `192.0.2.1:862`".to_string(),
            );
        }
        if let Some(interval) = line.probe_interval {
            if interval.0.is_zero() {
                self.error(
                    format!("{path}.probe_interval"),
                    "the probe interval is 0".into(),
                    "write e.g. `20ms` (50 probes per second on this line)".to_string(),
                );
            } else if interval.0 < Duration::from_millis(10) {
                self.warning(
                    format!("{path}.probe_interval"),
                    format!(
                        "probing every {interval} sends {} probes per second on line `{}`",
                        (1.0 / interval.0.as_secs_f64()).round(),
                        line.name
                    ),
                    "20ms (50/s) already detects a dead line within 200ms".to_string(),
                );
            }
        }
        if line.interface.is_empty()
            || line.interface.len() > 15
            || line.interface.contains(['/', ' '])
        {
            self.error(
                format!("{path}.interface"),
                format!("`{}` is not a Linux interface name", line.interface),
                "interface names are 1–15 characters without `/` or spaces".to_string(),
            );
        }
        if let Some(gateway) = line.gateway
            && gateway.is_ipv6()
        {
            self.error(
                format!("{path}.gateway"),
                format!(
                    "line `{}` of site `{site}` has an IPv6 address as its IPv4 gateway",
                    line.name
                ),
                format!("write it as `gateway6: {gateway}`"),
            );
        }
        for (direction, rate) in [("up", line.up), ("down", line.down)] {
            if rate.bps() == 0 {
                self.error(
                    format!("{path}.{direction}"),
                    format!(
                        "line `{}` of site `{site}` has no {direction}stream capacity",
                        line.name
                    ),
                    "write the contracted rate, e.g. `50mbit`".to_string(),
                );
            }
        }
        if line.cost < 0.0 {
            self.error(
                format!("{path}.cost"),
                format!("line `{}` has a negative cost", line.name),
                "costs are relative and start at 0".to_string(),
            );
        }
    }

    fn classes(&mut self) {
        let policy = self.policy;
        if policy.classes.is_empty() {
            self.error(
                "classes".into(),
                "the policy has no traffic classes".into(),
                "add at least a `default` class".to_string(),
            );
        }
        self.duplicates(
            policy
                .classes
                .iter()
                .enumerate()
                .map(|(i, class)| (format!("classes[{i}].name"), class.name.as_str())),
            |name| format!("class `{name}` is defined twice"),
        );
        let mut marks: BTreeMap<Dscp, usize> = BTreeMap::new();
        for (c, class) in policy.classes.iter().enumerate() {
            let path = format!("classes[{c}]");
            self.name(format!("{path}.name"), "class", &class.name);
            if !(1..=8).contains(&class.priority) {
                self.error(
                    format!("{path}.priority"),
                    format!("class `{}` has priority {}", class.name, class.priority),
                    "priorities run from 1 (served first) to 8, like the 8 levels of HTB"
                        .to_string(),
                );
            }
            match marks.get(&class.dscp) {
                Some(&first) => {
                    let used: BTreeSet<Dscp> = marks.keys().copied().collect();
                    let free = ["AF31", "AF21", "CS2", "AF11", "CS3", "AF32", "AF22", "CS1"]
                        .into_iter()
                        .find(|name| !used.contains(&name.parse::<Dscp>().unwrap_or_default()))
                        .unwrap_or("another code point");
                    let first_name = &policy.classes[first].name;
                    self.push(
                        Severity::Error,
                        format!("{path}.dscp"),
                        vec![format!("classes[{first}].dscp")],
                        format!(
                            "classes `{first_name}` and `{}` both mark DSCP {}",
                            class.name, class.dscp
                        ),
                        Some(format!(
                            "hubs tell classes apart by DSCP alone; give `{}` its own, e.g. `dscp: {free}`",
                            class.name
                        )),
                    );
                }
                None => {
                    marks.insert(class.dscp, c);
                }
            }
            for (r, rule) in class.matches.iter().enumerate() {
                self.match_rule(&format!("{path}.match[{r}]"), rule);
            }
        }
        let default_name = match &policy.default_class {
            Some(name) => {
                if policy.class(name).is_none() {
                    let names: Vec<&str> = policy
                        .classes
                        .iter()
                        .map(|class| class.name.as_str())
                        .collect();
                    let hint = match suggest::closest(name, names.iter().copied()) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("classes are {}", suggest::list(&names)),
                    };
                    self.error(
                        "default_class".into(),
                        format!("default class `{name}` is not a class of this policy"),
                        hint,
                    );
                }
                Some(name.as_str())
            }
            None => policy.default_class().map(|class| class.name.as_str()),
        };
        for (c, class) in policy.classes.iter().enumerate() {
            if class.matches.is_empty() && Some(class.name.as_str()) != default_name {
                self.warning(
                    format!("classes[{c}].name"),
                    format!(
                        "class `{}` has no match rules and is not the default class: no traffic can reach it",
                        class.name
                    ),
                    "add `match:` rules, or make it `default_class`".to_string(),
                );
            }
        }
    }

    fn match_rule(&mut self, path: &str, rule: &MatchRule) {
        for (a, app) in rule.apps.iter().enumerate() {
            if !valid_app(app) {
                self.error(
                    format!("{path}.apps[{a}]"),
                    format!("`{app}` is not an application name"),
                    "application names are lowercase catalogue names such as `teams`, `microsoft-365`, `salesforce`"
                        .to_string(),
                );
            } else if let Some(known) = self.known_apps
                && !known.iter().any(|name| name == app)
            {
                let hint = match suggest::closest(app, known.iter().map(String::as_str)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "use a name from the classifier's application catalogue".to_string(),
                };
                self.error(
                    format!("{path}.apps[{a}]"),
                    format!("the classifier knows no application `{app}`"),
                    hint,
                );
            }
        }
        for (d, domain) in rule.domains.iter().enumerate() {
            if let Some(rest) = domain.strip_prefix("*.") {
                self.error(
                    format!("{path}.domains[{d}]"),
                    format!("`{domain}` is a wildcard; domains here are suffixes"),
                    format!("write `{rest}`: it matches the name itself and every subdomain"),
                );
            } else if !valid_domain(domain) {
                self.error(
                    format!("{path}.domains[{d}]"),
                    format!("`{domain}` is not a domain name"),
                    "write a domain suffix such as `bloomberg.net`".to_string(),
                );
            }
        }
        let portless = !rule.protocols.is_empty()
            && rule.protocols.iter().all(|protocol| {
                !matches!(
                    protocol,
                    crate::model::Protocol::Tcp
                        | crate::model::Protocol::Udp
                        | crate::model::Protocol::Sctp
                )
            });
        if portless && !rule.ports.is_empty() {
            self.error(
                format!("{path}.ports"),
                "this rule matches ports, but none of its protocols has ports".into(),
                "ports need tcp, udp or sctp in `protocols`".to_string(),
            );
        }
    }

    /// Every line name and transport in the policy, each once, in the order first written.
    fn line_words(policy: &Policy) -> (Vec<&str>, Vec<&str>) {
        let mut names: Vec<&str> = Vec::new();
        // Hub lines are often named per branch (`br7-mpls`): a set, not a scan per line.
        let mut named: HashSet<&str> = HashSet::new();
        let mut transports: Vec<&str> = Vec::new();
        for line in policy.sites.iter().flat_map(|site| &site.lines) {
            if named.insert(&line.name) {
                names.push(&line.name);
            }
            if !transports.contains(&line.transport.as_str()) {
                transports.push(line.transport.as_str());
            }
        }
        (names, transports)
    }

    fn steering(&mut self) {
        let policy = self.policy;
        let (names, transports) = Self::line_words(policy);
        let known_names: HashSet<&str> = names.iter().copied().collect();
        for (c, class) in policy.classes.iter().enumerate() {
            let path = format!("classes[{c}].steering");
            for (list, verb, entries) in [
                ("prefer", "prefers", &class.steering.prefer),
                ("never", "excludes", &class.steering.never),
            ] {
                let mut seen: Vec<&str> = Vec::new();
                for (e, entry) in entries.iter().enumerate() {
                    let entry_path = format!("{path}.{list}[{e}]");
                    let known = known_names.contains(entry.as_str())
                        || transports.contains(&entry.as_str());
                    if !known {
                        let candidates = names
                            .iter()
                            .chain(&transports)
                            .copied()
                            .chain(Transport::ALL.iter().map(|t| t.as_str()));
                        let near = suggest::closest(entry, candidates);
                        let mut hint = format!("lines are {}", suggest::list(&names));
                        if transports.iter().any(|t| !known_names.contains(t)) {
                            hint.push_str(&format!(
                                "; transports are {}",
                                suggest::list(&transports)
                            ));
                        }
                        if let Some(near) = near {
                            hint = format!("did you mean `{near}`? {hint}");
                        }
                        self.error(
                            entry_path,
                            format!(
                                "class `{}` {verb} line `{entry}`, which no site has",
                                class.name
                            ),
                            hint,
                        );
                    } else if seen.contains(&entry.as_str()) {
                        self.warning(
                            entry_path,
                            format!("`{entry}` is listed twice in `{list}`"),
                            "remove the repeat".to_string(),
                        );
                    }
                    seen.push(entry);
                }
            }
            for (e, entry) in class.steering.never.iter().enumerate() {
                if let Some(p) = class.steering.prefer.iter().position(|p| p == entry) {
                    self.push(
                        Severity::Error,
                        format!("{path}.never[{e}]"),
                        vec![format!("{path}.prefer[{p}]")],
                        format!(
                            "class `{}` both prefers and never uses `{entry}`",
                            class.name
                        ),
                        Some("remove it from one of the two lists".into()),
                    );
                }
            }
            // A preferred line that `never` rules out by another name (`prefer: [mpls-a]`,
            // `never: [mpls]`) is as contradictory as the same word in both lists.
            for (p, entry) in class.steering.prefer.iter().enumerate() {
                if class.steering.never.contains(entry) {
                    continue;
                }
                let mut named = policy
                    .sites
                    .iter()
                    .flat_map(|site| &site.lines)
                    .filter(|line| line.is_named_by(entry))
                    .peekable();
                if named.peek().is_some() && named.all(|line| excluded(class, line)) {
                    self.error(
                        format!("{path}.prefer[{p}]"),
                        format!(
                            "class `{}` prefers `{entry}`, but its `never` list rules out every such line",
                            class.name
                        ),
                        "remove it from `prefer`, or narrow `never`".to_string(),
                    );
                }
            }
            // Every site must leave the class at least one line.
            let stranded_sites: Vec<&crate::model::Site> = policy
                .sites
                .iter()
                .filter(|site| !site.lines.is_empty())
                .filter(|site| site.lines.iter().all(|line| excluded(class, line)))
                .collect();
            let stranded: Vec<String> = stranded_sites
                .iter()
                .map(|site| site.name.clone())
                .collect();
            if !stranded.is_empty() {
                let lines: BTreeSet<&str> = stranded_sites
                    .iter()
                    .flat_map(|site| site.lines.iter().map(|line| line.name.as_str()))
                    .collect();
                let lines: Vec<&str> = lines.into_iter().collect();
                self.error(
                    format!("{path}.never"),
                    format!(
                        "class `{}` has nowhere to go at site{} {}: `never` excludes every line there ({})",
                        class.name,
                        if stranded.len() > 1 { "s" } else { "" },
                        few(&stranded),
                        suggest::list(&lines),
                    ),
                    "allow at least one line of every site, or the class's traffic is dropped there"
                        .to_string(),
                );
            }
        }
    }

    fn slas(&mut self) {
        let policy = self.policy;
        let probe = policy.timers.probe_interval.0;
        for (c, class) in policy.classes.iter().enumerate() {
            let Some(sla) = &class.sla else { continue };
            let path = format!("classes[{c}].sla");
            if let Some(loss) = sla.loss {
                if loss.0 == 0.0 {
                    self.error(
                        format!("{path}.loss"),
                        format!("class `{}` allows no loss at all; no line can promise that", class.name),
                        "every line drops a packet now and then, and the first lost probe would break 0%; voice tolerates about 1%, trading 0.1%"
                            .to_string(),
                    );
                } else {
                    // Rule of three: seeing no loss in 3/p probes bounds the loss below p
                    // with 95% confidence. Fewer probes cannot show a line meets the SLA.
                    let probes = (3.0 / loss.fraction()).ceil();
                    let proof = probe.as_secs_f64() * probes;
                    if proof > LOSS_PROOF_LIMIT.as_secs_f64() {
                        self.warning(
                            format!("{path}.loss"),
                            format!(
                                "showing that a line keeps loss under {loss} takes {probes} probes, {} at one probe per {}",
                                Span(Duration::from_secs(proof.round() as u64)),
                                Span(probe),
                            ),
                            "decisions on this bound will be slow; 0.1% is about the finest practical bound"
                                .to_string(),
                        );
                    }
                }
            }
            if let Some(jitter) = sla.jitter
                && jitter.0.is_zero()
            {
                self.error(
                    format!("{path}.jitter"),
                    format!(
                        "class `{}` allows no jitter at all; no line can promise that",
                        class.name
                    ),
                    "voice and video tolerate about 30ms".to_string(),
                );
            }
            if let Some(latency) = sla.latency {
                let usable: Vec<&Line> = policy
                    .sites
                    .iter()
                    .flat_map(|site| &site.lines)
                    .filter(|line| !excluded(class, line))
                    .collect();
                let fastest = usable
                    .iter()
                    .map(|line| latency_floor(line.transport))
                    .min();
                if let Some(fastest) = fastest
                    && latency.0 < fastest
                {
                    self.error(
                        format!("{path}.latency"),
                        format!(
                            "class `{}` needs latency under {latency}, which no line it may use can deliver",
                            class.name
                        ),
                        format!(
                            "the fastest of its lines needs about {} one way; floors assumed: mpls 1ms, internet 2ms, lte 10ms, satellite 20ms",
                            Span(fastest)
                        ),
                    );
                } else {
                    // Sites where every line the class may use is too slow: the class can
                    // run there only in breach of its SLA.
                    let slow_sites: Vec<String> = policy
                        .sites
                        .iter()
                        .filter(|site| {
                            let mut allowed = site
                                .lines
                                .iter()
                                .filter(|line| !excluded(class, line))
                                .peekable();
                            allowed.peek().is_some()
                                && allowed.all(|line| latency.0 < latency_floor(line.transport))
                        })
                        .map(|site| site.name.clone())
                        .collect();
                    if !slow_sites.is_empty() {
                        self.warning(
                            format!("{path}.latency"),
                            format!(
                                "at site{} {} no line class `{}` may use can meet latency {latency}",
                                if slow_sites.len() > 1 { "s" } else { "" },
                                few(&slow_sites),
                                class.name
                            ),
                            "the class will run there in breach of its SLA; floors assumed: mpls 1ms, internet 2ms, lte 10ms, satellite 20ms"
                                .to_string(),
                        );
                    }
                    for (p, entry) in class.steering.prefer.iter().enumerate() {
                        let slow: Vec<&&Line> = usable
                            .iter()
                            .filter(|line| line.is_named_by(entry))
                            .filter(|line| latency.0 < latency_floor(line.transport))
                            .collect();
                        if let Some(line) = slow.first() {
                            self.warning(
                                format!("classes[{c}].steering.prefer[{p}]"),
                                format!(
                                    "class `{}` prefers `{entry}`, but {} lines need about {} one way, over its latency bound of {latency}",
                                    class.name,
                                    line.transport,
                                    Span(latency_floor(line.transport))
                                ),
                                "the class will never use it; prefer a faster line".to_string(),
                            );
                        }
                    }
                }
            }
        }
    }

    fn bandwidth(&mut self) {
        let policy = self.policy;
        for (c, class) in policy.classes.iter().enumerate() {
            let path = format!("classes[{c}].bandwidth");
            let share = &class.bandwidth;
            if share.ceiling.0 == 0.0 {
                self.error(
                    format!("{path}.ceiling"),
                    format!(
                        "class `{}` has a ceiling of 0%: it can never send",
                        class.name
                    ),
                    "raise the ceiling, or remove the class".to_string(),
                );
            } else if share.ceiling.0 < share.guaranteed.0 {
                self.error(
                    format!("{path}.ceiling"),
                    format!(
                        "class `{}` has a ceiling of {} below its guarantee of {}",
                        class.name, share.ceiling, share.guaranteed
                    ),
                    "the ceiling must be at least the guaranteed share".to_string(),
                );
            }
        }
        // Sum the guarantees of the classes allowed on each line; lines with the same
        // allowed classes are reported together.
        let mut over: BTreeMap<Vec<usize>, BTreeSet<&str>> = BTreeMap::new();
        for line in policy.sites.iter().flat_map(|site| &site.lines) {
            let allowed: Vec<usize> = policy
                .classes
                .iter()
                .enumerate()
                .filter(|(_, class)| !excluded(class, line) && class.bandwidth.guaranteed.0 > 0.0)
                .map(|(c, _)| c)
                .collect();
            let total: f64 = allowed
                .iter()
                .map(|&c| policy.classes[c].bandwidth.guaranteed.0)
                .sum();
            if total > 100.0 + 1e-9 {
                over.entry(allowed).or_default().insert(&line.name);
            }
        }
        for (allowed, lines) in over {
            let mut running = 0.0;
            let mut crossing = allowed[0];
            for &c in &allowed {
                running += policy.classes[c].bandwidth.guaranteed.0;
                if running > 100.0 + 1e-9 {
                    crossing = c;
                    break;
                }
            }
            let total: f64 = allowed
                .iter()
                .map(|&c| policy.classes[c].bandwidth.guaranteed.0)
                .sum();
            let parts: Vec<String> = allowed
                .iter()
                .map(|&c| {
                    let class = &policy.classes[c];
                    format!("{} {}", class.name, class.bandwidth.guaranteed)
                })
                .collect();
            let lines: Vec<&str> = lines.into_iter().collect();
            let related = allowed
                .iter()
                .map(|c| format!("classes[{c}].bandwidth.guaranteed"))
                .collect();
            self.push(
                Severity::Error,
                format!("classes[{crossing}].bandwidth.guaranteed"),
                related,
                format!(
                    "guaranteed shares on line{} {} add up to {}%: {}",
                    if lines.len() > 1 { "s" } else { "" },
                    suggest::list(&lines),
                    (total * 100.0).round() / 100.0,
                    parts.join(", ")
                ),
                Some(
                    "a line cannot guarantee more than all of itself; lower the guarantees to total 100% or less"
                        .into(),
                ),
            );
        }
    }

    fn shadowing(&mut self) {
        let policy = self.policy;
        for (c, class) in policy.classes.iter().enumerate() {
            for (r, rule) in class.matches.iter().enumerate() {
                let earlier = policy.classes[..c]
                    .iter()
                    .enumerate()
                    .find_map(|(e, other)| {
                        other
                            .matches
                            .iter()
                            .position(|wide| covers(wide, rule))
                            .map(|w| (e, w))
                    });
                if let Some((e, w)) = earlier {
                    let other = &policy.classes[e];
                    let wide_path = format!("classes[{e}].match[{w}]");
                    let line = self.locate.line_of(&wide_path);
                    self.push(
                        Severity::Warning,
                        format!("classes[{c}].match[{r}]"),
                        vec![wide_path],
                        format!(
                            "this rule of class `{}` never matches: every packet it matches is taken first by class `{}`",
                            class.name, other.name
                        ),
                        Some(format!(
                            "classes are tried in file order; the wider rule is on line {line}. Move `{}` above `{}` or narrow that rule",
                            class.name, other.name
                        )),
                    );
                }
            }
        }
    }

    fn timers(&mut self) {
        let timers = &self.policy.timers;
        let probe = timers.probe_interval.0;
        if probe.is_zero() {
            self.error(
                "timers.probe_interval".into(),
                "the probe interval is 0".into(),
                "write e.g. `50ms` (20 probes per second per line)".to_string(),
            );
        } else if probe < Duration::from_millis(10) {
            self.warning(
                "timers.probe_interval".into(),
                format!(
                    "probing every {} sends {} probes per second on every line",
                    timers.probe_interval,
                    (1.0 / probe.as_secs_f64()).round()
                ),
                "50ms (20/s) already detects an outage in 150ms".to_string(),
            );
        } else if probe > Duration::from_secs(1) {
            self.warning(
                "timers.probe_interval".into(),
                format!(
                    "probing every {} notices a dead line only after {}",
                    timers.probe_interval,
                    Span(probe * timers.down_after_missed.max(1))
                ),
                "50ms–200ms keeps failover under a second".to_string(),
            );
        }
        if timers.down_after_missed == 0 {
            self.error(
                "timers.down_after_missed".into(),
                "`down_after_missed` is 0: every line would count as down".into(),
                "3 is the default".to_string(),
            );
        }
        if timers.hold_down.0.is_zero() {
            self.warning(
                "timers.hold_down".into(),
                "hold-down is 0: classes move back the moment a line recovers".into(),
                "a flapping line will pull traffic back and forth; 30s is the default".to_string(),
            );
        }
        if timers.min_improvement.0 == 0.0 {
            self.warning(
                "timers.min_improvement".into(),
                "`min_improvement` is 0%: any tiny gain moves a class".into(),
                "measurement noise alone will move classes; 10% is the default".to_string(),
            );
        }
        let damp = &timers.dampening;
        if damp.half_life.0.is_zero() {
            self.error(
                "timers.dampening.half_life".into(),
                "the dampening half-life is 0".into(),
                "1m is the default".to_string(),
            );
        }
        if damp.reuse >= damp.suppress {
            self.error(
                "timers.dampening.reuse".into(),
                format!(
                    "dampening reuses a line at {} but suppresses it only above {}",
                    damp.reuse, damp.suppress
                ),
                "`reuse` must be below `suppress` (defaults 750 and 2000)".to_string(),
            );
        } else if damp.penalty > 0 && !damp.half_life.0.is_zero() {
            // The penalty never exceeds the one that decays to `reuse` within max_suppress.
            let halvings = damp.max_suppress.0.as_secs_f64() / damp.half_life.0.as_secs_f64();
            let ceiling = f64::from(damp.reuse) * 2f64.powf(halvings.min(60.0));
            if f64::from(damp.suppress) > ceiling {
                self.warning(
                    "timers.dampening.suppress".into(),
                    format!(
                        "dampening can never suppress a line: the penalty is capped at {ceiling:.0}, below `suppress` {}",
                        damp.suppress
                    ),
                    "raise `max_suppress` or lower `suppress`".to_string(),
                );
            }
        }
    }
}

/// True when the class's `never` list rules out this line.
fn excluded(class: &Class, line: &Line) -> bool {
    class
        .steering
        .never
        .iter()
        .any(|entry| line.is_named_by(entry))
}

/// True when every packet `narrow` matches is also matched by `wide`.
pub fn covers(wide: &MatchRule, narrow: &MatchRule) -> bool {
    fn subset<T: PartialEq>(wide: &[T], narrow: &[T]) -> bool {
        wide.is_empty() || (!narrow.is_empty() && narrow.iter().all(|n| wide.contains(n)))
    }
    let prefixes = wide.prefixes.is_empty()
        || (!narrow.prefixes.is_empty()
            && narrow
                .prefixes
                .iter()
                .all(|n| wide.prefixes.iter().any(|w| w.contains(n))));
    let ports = wide.ports.is_empty()
        || (!narrow.ports.is_empty()
            && narrow.ports.iter().all(|n| {
                wide.ports
                    .iter()
                    .any(|w| w.first <= n.first && n.last <= w.last)
            }));
    let domains = wide.domains.is_empty()
        || (!narrow.domains.is_empty()
            && narrow
                .domains
                .iter()
                .all(|n| wide.domains.iter().any(|w| domain_within(n, w))));
    prefixes
        && ports
        && domains
        && subset(&wide.protocols, &narrow.protocols)
        && subset(&wide.dscp, &narrow.dscp)
        && subset(&wide.apps, &narrow.apps)
}

/// True when every name under suffix `narrow` is also under suffix `wide`.
fn domain_within(narrow: &str, wide: &str) -> bool {
    let narrow = narrow.trim_start_matches('.').to_ascii_lowercase();
    let wide = wide.trim_start_matches('.').to_ascii_lowercase();
    narrow == wide || narrow.ends_with(&format!(".{wide}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> MatchRule {
        yaml_serde::from_str(text).unwrap()
    }

    #[test]
    fn wider_rules_cover_narrower_ones() {
        let web = rule("{protocols: [tcp], ports: [443]}");
        let saas = rule("{protocols: [tcp], ports: [443], apps: [microsoft-365]}");
        assert!(covers(&web, &saas));
        assert!(!covers(&saas, &web));
        let catch_all = MatchRule::default();
        assert!(covers(&catch_all, &web));
        assert!(!covers(&web, &catch_all));
        let range = rule("{ports: [\"1000-2000\"]}");
        assert!(covers(&range, &rule("{ports: [1500]}")));
        assert!(!covers(&range, &rule("{ports: [\"1500-2500\"]}")));
        let net = rule("{prefixes: [10.0.0.0/8]}");
        assert!(covers(
            &net,
            &rule("{prefixes: [10.20.0.0/16], protocols: [udp]}")
        ));
        assert!(!covers(&net, &rule("{prefixes: [192.0.2.0/24]}")));
        let domain = rule("{domains: [bloomberg.net]}");
        assert!(covers(&domain, &rule("{domains: [bpipe.bloomberg.net]}")));
        assert!(!covers(&domain, &rule("{domains: [notbloomberg.net]}")));
    }

    #[test]
    fn names_and_apps_have_a_syntax() {
        assert!(valid_name("branch-01"));
        assert!(!valid_name("branch 01"));
        assert!(!valid_name(""));
        assert!(valid_app("google-workspace"));
        assert!(!valid_app("Microsoft 365"));
        assert!(valid_domain("bloomberg.net"));
        assert!(valid_domain(".reuters.com"));
        assert!(!valid_domain("bad..domain"));
    }
}
