//! "No such name" messages for plan and phase names typed on the command
//! line: the closest known name by edit distance ("did you mean ...?") and
//! the names that exist. Every command builds its message here.

/// Edit distance (Levenshtein: insertions, deletions, substitutions), over
/// characters. Twenty lines, so no dependency for it.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The known name closest to `typed`, if it is close enough to be a typo:
/// at most one edit per three characters of what was typed (at least one),
/// case ignored. Ties go to the first in `known`.
pub fn closest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    let limit = (typed.chars().count() / 3).max(1);
    known
        .iter()
        .map(|name| (edit_distance(&typed, &name.to_lowercase()), *name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// `no plan named "users-fullname" in plans; did you mean users-full-name? (plans: a, users-full-name)`.
/// `place` says where orch looked (e.g. `in plans` or `in plans/ or the database`).
pub fn unknown_plan(typed: &str, place: &str, known: &[&str]) -> String {
    format!(
        "no plan named {typed:?} {place}{}",
        suggestion(typed, known, "plans")
    )
}

/// `plan users has no phase "backfil"; did you mean backfill? (phases: add, backfill)`.
pub fn unknown_phase(plan: &str, typed: &str, known: &[&str]) -> String {
    format!(
        "plan {plan} has no phase {typed:?}{}",
        suggestion(typed, known, "phases")
    )
}

fn suggestion(typed: &str, known: &[&str], what: &str) -> String {
    let guess = closest(typed, known)
        .map(|name| format!("; did you mean {name}?"))
        .unwrap_or_default();
    let list = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    format!("{guess} ({what}: {list})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "", 3),
            ("", "ab", 2),
            ("users-fullname", "users-full-name", 1),
            ("kitten", "sitting", 3),
            ("flaw", "lawn", 2),
            ("über", "uber", 1),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} / {b}");
            assert_eq!(edit_distance(b, a), d, "{b} / {a}");
        }
    }

    #[test]
    fn closest_name_within_the_cut_off() {
        let known = ["posts-location", "users-full-name", "orders"];
        for (typed, expected) in [
            ("users-fullname", Some("users-full-name")),
            ("Users-Full-Name", Some("users-full-name")),
            ("post-location", Some("posts-location")),
            ("ordrs", Some("orders")),
            ("order", Some("orders")),
            ("users", None),
            ("zzz", None),
            ("", None),
        ] {
            assert_eq!(closest(typed, &known), expected, "{typed}");
        }
    }

    #[test]
    fn messages_suggest_and_list() {
        assert_eq!(
            unknown_plan("users-fullname", "in plans", &["posts", "users-full-name"]),
            "no plan named \"users-fullname\" in plans; did you mean users-full-name? (plans: posts, users-full-name)"
        );
        assert_eq!(
            unknown_plan("x", "in plans", &[]),
            "no plan named \"x\" in plans (plans: none)"
        );
        assert_eq!(
            unknown_phase("p", "backfil", &["add", "backfill"]),
            "plan p has no phase \"backfil\"; did you mean backfill? (phases: add, backfill)"
        );
    }
}
