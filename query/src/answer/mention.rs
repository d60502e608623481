//! Whether the sources mention what the question names. A question about an entity that no
//! retrieved passage mentions ("How much did the Groton School charge...?" over a collection
//! that never names Groton; "...sources of American Union law?" over passages on the European
//! Union) is on the sources' topic at best, and is not answered by them, however close its
//! embedding comes to theirs.
//!
//! Names are compared folded (case, accents: "Schrodinger" is "Schrödinger") and forgiving one
//! slip of the keyboard in a long word ("Maastrich", "Hatmanis" for "Hartmanis"): a question
//! with a typo is still about the collection's entity. Numbers must match exactly ("1782" is
//! not "1781").

use std::collections::HashSet;
use unicode_normalization::UnicodeNormalization;

/// Letters a word needs before one edit (insertion, deletion, substitution, transposition)
/// is forgiven.
const FUZZY_LETTERS: usize = 5;

/// The first name in `question` (a capitalised word after its first word, or a word with a
/// capital inside) or number (of two digits or more) of which no part occurs in `texts`, if
/// any. A word's parts are its runs of
/// letters and digits ("Harvard/Radcliffe", "Sklodowska-Curie"); one part found (or its
/// plural or singular) is enough, and one-letter parts are ignored, as are acronyms (all
/// capitals: "US" may be written "United States", "WWII" "World War II").
pub(crate) fn unmentioned(question: &str, texts: &[&str]) -> Option<String> {
    let known: HashSet<String> = texts
        .iter()
        .flat_map(|t| t.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(fold)
        .collect();
    let found = |part: &str| {
        let p = fold(part);
        known.contains(&p)
            || known.contains(&format!("{p}s"))
            || p.strip_suffix('s').is_some_and(|s| known.contains(s))
            || (p.chars().count() >= FUZZY_LETTERS
                && p.chars().all(char::is_alphabetic)
                && known.iter().any(|k| strsim::damerau_levenshtein(k, &p) <= 1))
    };
    let is_name = |w: &str| {
        let acronym = w.chars().all(|c| c.is_uppercase() || c.is_ascii_digit());
        !acronym && (w.chars().next().is_some_and(char::is_uppercase) || w.chars().skip(1).any(char::is_uppercase))
    };
    question.split_whitespace().skip(1).find_map(|word| {
        let parts: Vec<&str> = word.split(|c: char| !c.is_alphanumeric()).filter(|p| p.chars().count() >= 2).collect();
        let named = parts.iter().any(|p| is_name(p) || p.chars().any(|c| c.is_ascii_digit()));
        (named && !parts.iter().any(|p| found(p)))
            .then(|| word.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
    })
}

/// A word lower-cased, its accents dropped ("Kücükdeveci" -> "kucukdeveci", "Bolesław" ->
/// "boleslaw").
fn fold(word: &str) -> String {
    word.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ł' => 'l',
            'ø' => 'o',
            'đ' => 'd',
            'ı' => 'i',
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_no_source_mentions_is_found() {
        let texts = ["The European Union's sources of law include case law by the Court of Justice."];
        assert_eq!(unmentioned("What are the sources of American Union law?", &texts).as_deref(), Some("American"));
        assert_eq!(unmentioned("What are the sources of European Union law?", &texts), None);
        // Any part of a compound word, plurals, and a first word (capitalised as a sentence) pass.
        assert_eq!(unmentioned("Which Courts rule on Justice/Law?", &texts), None);
        assert_eq!(unmentioned("Groton is where?", &texts), None);
        assert_eq!(unmentioned("Who sued in the Groton case?", &texts).as_deref(), Some("Groton"));
        assert_eq!(unmentioned("How does HNSW's search work?", &["hnsw is a graph"]), None);
        assert_eq!(unmentioned("Which US city is it in?", &texts), None);
        let texts = ["In 1781 James Watt patented a steam engine; by 1,000 units it was sold."];
        assert_eq!(unmentioned("Who patented a steam engine in 1781?", &texts), None);
        assert_eq!(unmentioned("Who patented a steam engine in 1782?", &texts).as_deref(), Some("1782"));
        assert_eq!(unmentioned("Was it 1,000 units?", &texts), None);
        // A typo or a missing accent is still the name; another name is not.
        let texts = ["The Schrödinger equation; Bolesław II of Masovia; the Maastricht Treaty."];
        assert_eq!(unmentioned("What is the Schrodinger equation?", &texts), None);
        assert_eq!(unmentioned("Who was Boleslaw II?", &texts), None);
        assert_eq!(unmentioned("When was the Maastrich Treaty signed?", &texts), None);
        assert_eq!(unmentioned("When was the Lisbon Treaty signed?", &texts).as_deref(), Some("Lisbon"));
        assert_eq!(unmentioned("Who was Masurian II?", &texts).as_deref(), Some("Masurian"));
    }
}
