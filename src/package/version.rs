/*!
How package versions compare, for "the newest version" of the Deployment Server's identity
model (`--keep-versions`).

A version is split at `.` into components; components compare from the left, each by its
leading number (numerically: `10` > `9`, `007` = `7`), then by what follows the number, where
nothing beats something (`1.0` > `1.0-beta`, `2` > `2rc1`) and otherwise bytes compare. A
missing component counts as `0` (`1.0` = `1.0.0`). A package without a version is `0.0.0`, as
on the Deployment Server. Versions that compare equal but are written differently (`1.0` and
`1.0.0`) are ordered by their text, so the order is total and stable.
*/

use std::cmp::Ordering;

/// The version the Deployment Server gives a package without one.
pub const NO_VERSION: &str = "0.0.0";

/// One component: its leading number and the rest.
fn split(component: &str) -> (u128, &str) {
    let digits = component.len()
        - component
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    let number = component[..digits]
        .trim_start_matches('0')
        .parse::<u128>()
        .unwrap_or(0);
    // More than 38 digits: compare as if maximal (still total: the text breaks the tie).
    let number = if digits > 38 { u128::MAX } else { number };
    (number, &component[digits..])
}

fn compare_component(a: &str, b: &str) -> Ordering {
    let ((na, ra), (nb, rb)) = (split(a), split(b));
    na.cmp(&nb)
        .then_with(|| match (ra.is_empty(), rb.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => ra.cmp(rb),
        })
}

/// Compare two versions as described above.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a.split('.'), b.split('.'));
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (x, y) => {
                let order = compare_component(x.unwrap_or("0"), y.unwrap_or("0"));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn numeric_components_compare_as_numbers() {
        assert_eq!(compare("1.10", "1.9"), Greater);
        assert_eq!(compare("2.0", "10.0"), Less);
        assert_eq!(compare("1.007", "1.7"), Less); // equal as numbers: the text decides
        assert_eq!(compare("1.0", "1.0.0"), Less); // equal as numbers: the text decides
        assert_eq!(compare("1.0.1", "1.0"), Greater);
        assert_eq!(compare("1.0.0", "1.0.0"), Equal);
    }

    #[test]
    fn a_suffix_is_older_than_none() {
        assert_eq!(compare("1.0", "1.0-beta"), Greater);
        assert_eq!(compare("2rc1", "2"), Less);
        assert_eq!(compare("1.0-beta", "1.0-alpha"), Greater);
        assert_eq!(compare("1.1-beta", "1.0"), Greater);
        assert_eq!(compare("abc", "1"), Less); // no number is 0
        assert_eq!(compare("", NO_VERSION), Less);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let huge = "9".repeat(60);
        assert_eq!(compare(&huge, "1"), Greater);
        assert_eq!(compare(&format!("{huge}.1"), &format!("{huge}.2")), Less);
    }
}
