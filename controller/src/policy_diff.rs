//! What changed between two policies, one line per change, for the API and the audit log.
//!
//! Works on the policies' serde form: objects compare key by key, lists of named things
//! (sites, lines, classes) compare by name, anything else compares as a whole, e.g.
//! `classes[voice].sla.loss: "1%" -> "2%"` or `sites[branch-9]: added`.

use std::collections::HashMap;

use serde_json::Value;
use wansteer_policies::Policy;

/// The changes from `old` to `new`, in document order; empty when they mean the same.
pub fn diff(old: &Policy, new: &Policy) -> Vec<String> {
    let old = serde_json::to_value(old).expect("policies serialise");
    let new = serde_json::to_value(new).expect("policies serialise");
    let mut changes = Vec::new();
    diff_value("", &old, &new, &mut changes);
    changes
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn diff_value(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, old_value) in a {
                match b.get(key) {
                    Some(new_value) => diff_value(&join(path, key), old_value, new_value, out),
                    None => out.push(format!("{}: removed", join(path, key))),
                }
            }
            for (key, new_value) in b {
                if !a.contains_key(key) {
                    out.push(format!("{}: set to {new_value}", join(path, key)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if is_named_list(a) && is_named_list(b) => {
            // Indexed by name: policies list thousands of sites.
            let name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
            let old_by_name: HashMap<String, &Value> = a.iter().map(|v| (name(v), v)).collect();
            let new_by_name: HashMap<String, &Value> = b.iter().map(|v| (name(v), v)).collect();
            for old_item in a {
                let key = name(old_item);
                match new_by_name.get(&key) {
                    Some(new_item) => {
                        diff_value(&format!("{path}[{key}]"), old_item, new_item, out)
                    }
                    None => out.push(format!("{path}[{key}]: removed")),
                }
            }
            for new_item in b {
                let key = name(new_item);
                if !old_by_name.contains_key(&key) {
                    out.push(format!("{path}[{key}]: added"));
                }
            }
            let common = |list: &[Value], other: &HashMap<String, &Value>| -> Vec<String> {
                list.iter()
                    .map(name)
                    .filter(|n| other.contains_key(n))
                    .collect()
            };
            let new_order = common(b, &old_by_name);
            if common(a, &new_by_name) != new_order {
                out.push(format!("{path}: order changed to {}", new_order.join(", ")));
            }
        }
        _ if old != new => out.push(format!("{path}: {old} -> {new}")),
        _ => {}
    }
}

fn is_named_list(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|item| item["name"].is_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
sites:
  - name: b1
    kind: branch
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 50mbit, down: 50mbit }
      - { name: lte, transport: lte, interface: wan1, up: 20mbit, down: 20mbit }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ protocols: [udp], ports: ["16384-32767"] }]
    sla: { loss: 1% }
  - name: default
    priority: 7
"#;

    fn policy(text: &str) -> Policy {
        wansteer_policies::check_source("p.yaml", text)
            .unwrap()
            .policy
    }

    #[test]
    fn same_policy_has_no_changes() {
        assert!(diff(&policy(BASE), &policy(BASE)).is_empty());
    }

    #[test]
    fn changes_name_what_moved() {
        let new = BASE
            .replace("sla: { loss: 1% }", "sla: { loss: 2% }")
            .replace(
                "      - { name: lte, transport: lte, interface: wan1, up: 20mbit, down: 20mbit }\n",
                "",
            )
            .replace(
                "  - name: default",
                "  - name: bulk\n    priority: 6\n    dscp: LE\n    match: [{ ports: [\"873\"] }]\n  - name: default",
            );
        let changes = diff(&policy(BASE), &policy(&new));
        assert!(
            changes
                .iter()
                .any(|c| c.starts_with("classes[voice].sla.loss:") && c.contains('2')),
            "{changes:?}"
        );
        assert!(
            changes.contains(&"sites[b1].lines[lte]: removed".to_string()),
            "{changes:?}"
        );
        assert!(
            changes.contains(&"classes[bulk]: added".to_string()),
            "{changes:?}"
        );
    }
}
