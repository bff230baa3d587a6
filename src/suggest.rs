//! "Did you mean …?": the known name nearest to a mistyped one (a namespace given to `-n`,
//! a policy name), by edit distance. Names come from outside: they are bounded before any
//! distance is computed, so a long one costs nothing.

/// Names longer than this are never suggested nor compared (the distance is quadratic).
const LONGEST_COMPARED: usize = 256;

/// The candidate nearest to `asked`, if one is near enough to be a typo of it: at most one
/// edit, plus one per five characters (case ignored; a swap of two neighbours is one
/// edit). Ties go to the first candidate. An exact match is not a suggestion.
pub fn nearest<'a>(asked: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let asked: Vec<char> = asked.to_lowercase().chars().collect();
    if asked.is_empty() || asked.len() > LONGEST_COMPARED {
        return None;
    }
    let allowed = 1 + asked.len() / 5;
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let lowered: Vec<char> = candidate.to_lowercase().chars().collect();
        if lowered.len() > LONGEST_COMPARED || lowered.len().abs_diff(asked.len()) > allowed {
            continue;
        }
        let distance = edits(&asked, &lowered);
        if distance == 0 || distance > allowed {
            continue;
        }
        if best.is_none_or(|(shortest, _)| distance < shortest) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbours, one edit each.
fn edits(a: &[char], b: &[char]) -> usize {
    // Three rows of the table: two back (for swaps), one back, this one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_the_name_it_was_meant_to_be() {
        let namespaces = ["engineering", "finance", "sales"];
        assert_eq!(nearest("finanse", namespaces), Some("finance"));
        assert_eq!(nearest("fiannce", namespaces), Some("finance"));
        assert_eq!(
            nearest("Enginering", ["Finance", "Engineering"]),
            Some("Engineering")
        );
        assert_eq!(nearest("sale", namespaces), Some("sales"));
    }

    #[test]
    fn nothing_near_is_no_suggestion() {
        let namespaces = ["engineering", "finance", "sales"];
        assert_eq!(nearest("hr", ["it", "qa"]), None);
        assert_eq!(nearest("marketing", namespaces), None);
        assert_eq!(nearest("finance", namespaces), None, "an exact match");
        assert_eq!(nearest("", namespaces), None);
        assert_eq!(nearest(&"a".repeat(10_000), [&*"a".repeat(10_001)]), None);
    }

    #[test]
    fn the_nearest_of_several_wins() {
        assert_eq!(nearest("financ", ["finances", "finance"]), Some("finance"));
    }

    #[test]
    fn distances() {
        let d = |a: &str, b: &str| {
            edits(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("ab", "ba"), 1);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("same", "same"), 0);
    }
}
