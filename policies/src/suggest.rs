//! "Did you mean …?" for misspelt keys and names.

/// Edit distance (insertions, deletions, substitutions, adjacent swaps) between two words.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Full matrix: words here are short.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| {
            (
                distance(&word_lower, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// `a, b and c` for hints.
pub fn list(items: &[&str]) -> String {
    match items {
        [] => "none".to_string(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_word() {
        assert_eq!(
            closest("prioity", ["priority", "dscp", "name"]),
            Some("priority")
        );
        assert_eq!(closest("bandwith", ["bandwidth", "sla"]), Some("bandwidth"));
        assert_eq!(
            closest("lantency", ["latency", "loss", "jitter"]),
            Some("latency")
        );
        assert_eq!(closest("Mpls2", ["mpls", "lte"]), Some("mpls"));
        assert_eq!(closest("colour", ["priority", "dscp"]), None);
    }

    #[test]
    fn lists_read_as_english() {
        assert_eq!(list(&["mpls", "internet", "lte"]), "mpls, internet and lte");
        assert_eq!(list(&["mpls"]), "mpls");
    }
}
