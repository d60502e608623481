//! Numbers and dates as short answers. A question asking "how many", "when" or "how long" is
//! answered by the number or the date itself, not by the clause around it: "When was
//! Zia-ul-Haq killed?" -> "1988", not "1988 but Islamization remains an important element".
//! Each run of a sentence that holds a number is cut to its numeric windows (numbers, number
//! words, months, "1970s", "mid-14th century", joined by "to" or "and"), with the words that
//! qualify a number ("about", "nearly", "early") before it and, for measures, its unit after it.

use super::span::Run;
use super::terms::{bare, terms};
use std::collections::HashSet;

/// How the question wants its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// A date or a year: "when", "what year", "what century".
    Date,
    /// A bare count: "how many".
    Count,
    /// An amount with its unit: "how much", "how long", "how old", "what percentage".
    Measure,
}

/// Number words a run may hold in place of digits.
const NUMBER_WORDS: &[&str] = &[
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "billion",
    "trillion",
    "dozen",
    "dozens",
    "hundreds",
    "thousands",
    "millions",
    "half",
    "several",
    "century",
    "centuries",
    "decade",
    "decades",
];

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Words of a date besides numbers and months.
const DATE_WORDS: &[&str] = &["bc", "bce", "ad", "ce", "century", "centuries"];

/// Words that qualify the number after them and belong to the answer, by style.
const DATE_QUALIFIERS: &[&str] = &["early", "late", "mid", "circa"];
const AMOUNT_QUALIFIERS: &[&str] = &[
    "about",
    "around",
    "approximately",
    "nearly",
    "almost",
    "over",
    "under",
    "roughly",
    "some",
    "only",
    "more",
    "less",
    "fewer",
    "least",
    "up",
    "than",
    "to",
    "at",
];
/// A duration may start at a date: "since the 1950s", "until 1796".
const SPAN_QUALIFIERS: &[&str] = &["since", "until", "the"];

/// Words that join two numbers into one answer ("1870 to 1939", "two and a half").
const JOINERS: &[&str] = &["to", "and", "or", "until", "through", "–", "-", "of", "a", "the"];

/// The question's number style, or `None` when it does not ask for a number.
pub(crate) fn style(question: &str) -> Option<Style> {
    let q = question.trim().to_lowercase();
    let starts = |ps: &[&str]| ps.iter().any(|p| q.starts_with(p));
    if starts(&["how many"]) {
        Some(Style::Count)
    } else if starts(&["when", "what year", "in what year", "which year", "what date", "what century", "what decade"]) {
        Some(Style::Date)
    } else if starts(&[
        "how much",
        "how long",
        "how old",
        "how far",
        "how large",
        "how big",
        "what percentage",
        "what percent",
    ]) {
        Some(Style::Measure)
    } else {
        None
    }
}

/// Whether a word is a number: digits or a number word ("two", "million", "dozen").
pub(crate) fn is_number(word: &str) -> bool {
    numeric(word, Style::Count)
}

/// Whether a word is (part of) a number in this style.
fn numeric(word: &str, style: Style) -> bool {
    let b = bare(word);
    let currency = word.starts_with(['$', '£', '€', '¥']) || word.trim_end_matches([',', '.', ';', ')']).ends_with('%');
    if style == Style::Date && currency {
        return false;
    }
    b.chars().any(|c| c.is_ascii_digit())
        || NUMBER_WORDS.contains(&b.as_str())
        || (style == Style::Date && (MONTHS.contains(&b.as_str()) || DATE_WORDS.contains(&b.as_str())))
}

/// Whether a window reads as a date: a year (three or four digits, or a decade), a month, a
/// century or an era; a range of years ("1763–1775") too.
pub(crate) fn date_like(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '–' || c == '-').any(|w| {
        let b = bare(w);
        let year = (3..=4).contains(&b.len()) && b.chars().all(|c| c.is_ascii_digit());
        year || b.ends_with("0s") || MONTHS.contains(&b.as_str()) || DATE_WORDS.contains(&b.as_str())
    })
}

/// The numeric windows of `runs` (runs of `sentence`'s words) for a question of `style` whose
/// content terms are `question`. For a date, only windows that read as dates ("a few
/// thousand" is no answer to "when").
pub(crate) fn cores(sentence: &str, runs: &[Run], style: Style, question: &HashSet<String>) -> Vec<Run> {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let mut out = Vec::new();
    for run in runs {
        let last = run.last.min(words.len().saturating_sub(1));
        let mut i = run.first;
        while i <= last {
            if !numeric(words[i], style) {
                i += 1;
                continue;
            }
            // Numbers joined by joiners, as long as another number follows the joiners.
            let mut end = i;
            let mut j = i + 1;
            while j <= last {
                if numeric(words[j], style) {
                    end = j;
                    j += 1;
                } else if JOINERS.contains(&bare(words[j]).as_str()) && !words[j - 1].ends_with(',') {
                    j += 1;
                } else {
                    break;
                }
            }
            // Up to two qualifying words before it, also ones the run trimmed as stop words.
            let qualifies = |w: &str| {
                let b = bare(w);
                match style {
                    Style::Date => DATE_QUALIFIERS.contains(&b.as_str()),
                    Style::Count => AMOUNT_QUALIFIERS.contains(&b.as_str()),
                    Style::Measure => AMOUNT_QUALIFIERS.contains(&b.as_str()) || SPAN_QUALIFIERS.contains(&b.as_str()),
                }
            };
            let mut start = i;
            while start > 0
                && start + 2 > i
                && qualifies(words[start - 1])
                && !words[start - 1].ends_with([',', ';', ':', ')'])
            {
                start -= 1;
            }
            // A measure keeps its unit ("three years", "60 km"): a lower-case word after an
            // amount (a year takes none: "1983 brought"), not one the question holds.
            if style == Style::Measure && end < last && !words[end].ends_with([',', ';', ')']) && !date_like(words[end])
            {
                let unit = words[end + 1];
                let b = bare(unit);
                let asked = terms(unit).iter().any(|t| question.contains(t));
                let lower = !b.is_empty() && unit.chars().all(|c| c.is_lowercase() || c.is_ascii_punctuation());
                if lower && !JOINERS.contains(&b.as_str()) && !asked && !b.ends_with("ed") {
                    end += 1;
                }
            }
            let text = words[start..=end].join(" ");
            out.push(Run { first: start, last: end, text: text.trim_end_matches([',', ';', ':', '.']).to_string() });
            i = end + 1;
        }
    }
    if style == Style::Date {
        out.retain(|r| date_like(&r.text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::span::runs;

    fn cut(sentence: &str, question: &str) -> Vec<String> {
        let q: HashSet<String> = terms(question).into_iter().collect();
        let style = style(question).expect("a number question");
        cores(sentence, &runs(sentence, question, true), style, &q).into_iter().map(|r| r.text).collect()
    }

    #[test]
    fn styles_follow_the_question_word() {
        assert_eq!(style("How many students enrolled?"), Some(Style::Count));
        assert_eq!(style("When was it built?"), Some(Style::Date));
        assert_eq!(style("How long did the war last?"), Some(Style::Measure));
        assert_eq!(style("Who built it?"), None);
    }

    #[test]
    fn dates_are_cut_to_the_date() {
        assert_eq!(
            cut("Zia-ul-Haq was killed in 1988 but Islamization remains an element.", "When was Zia-ul-Haq killed?"),
            ["1988"]
        );
        assert_eq!(
            cut(
                "During the 1970s and sometimes later, governments supported Islamists.",
                "When did governments support Islamists?"
            ),
            ["1970s"]
        );
        assert_eq!(
            cut("It lasted from 4 August 1915 until November 1918.", "When did it last?"),
            ["4 August 1915 until November 1918"]
        );
        // Money is not a date when a year is there, nor a number that is not a date.
        assert_eq!(cut("Since 2007 families earning $60,000 pay less.", "When did families pay less?"), ["2007"]);
        assert!(cut("Families pay only a few thousand dollars a year.", "When did inequality rise?").is_empty());
        assert!(date_like("1763–1775") && date_like("the 1970s") && !date_like("a few thousand"));
    }

    #[test]
    fn counts_and_measures() {
        assert_eq!(
            cut(
                "The library holds about 18 million volumes in 80 libraries.",
                "How many volumes does the library hold?"
            ),
            ["about 18 million", "80"]
        );
        assert_eq!(
            cut("He moved to the city when he was seven months old.", "How old was he when he moved?"),
            ["seven months"]
        );
        assert_eq!(cut("His visits in 1979 and 1983 brought support.", "How long had he been pope in 1979?"), ["1983"]);
        assert_eq!(
            cut("The war lasted nearly three hundred years, until 1796.", "How long did the war last?"),
            ["nearly three hundred years", "until 1796"]
        );
    }
}
