//! Where things are: countries and, later, positions.

mod countries;

pub use countries::COUNTRIES;

/// The canonical (uppercase) ISO 3166-1 alpha-2 code for `code`, if it is an
/// assigned one; matching ignores case. `XK` (Kosovo), a user-assigned code
/// in common use, is accepted too.
pub fn country(code: &str) -> Option<&'static str> {
    if code.len() != 2 {
        return None;
    }
    let upper = code.to_ascii_uppercase();
    if upper == "XK" {
        return Some("XK");
    }
    COUNTRIES
        .binary_search_by(|(c, _)| (*c).cmp(upper.as_str()))
        .ok()
        .map(|i| COUNTRIES[i].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_matched_case_insensitively() {
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(COUNTRIES.len() >= 249);
        assert_eq!(country("de"), Some("DE"));
        assert_eq!(country("Fr"), Some("FR"));
        assert_eq!(country("ZZ"), None);
        assert_eq!(country("NOTACOUNTRY"), None);
        assert_eq!(country("é"), None);
    }
}
