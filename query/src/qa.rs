//! Reading-comprehension scoring as SQuAD's official script does it: answers compared after
//! normalisation (lower case, punctuation and the articles a / an / the removed, whitespace
//! collapsed); exact match, token F1, and whether a longer text contains a gold answer.

/// SQuAD's normalisation of an answer.
pub fn normalize(text: &str) -> String {
    let lower = text.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation() && !is_unicode_punct(*c)).collect();
    no_punct.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Quotation marks and dashes SQuAD's `string.punctuation` misses but answers carry.
fn is_unicode_punct(c: char) -> bool {
    matches!(c, '“' | '”' | '‘' | '’' | '–' | '—' | '…' | '«' | '»')
}

/// 1.0 when `pred` equals one of `golds` after normalisation.
pub fn exact_match(pred: &str, golds: &[String]) -> f64 {
    let p = normalize(pred);
    f64::from(u8::from(golds.iter().any(|g| normalize(g) == p)))
}

/// The best token F1 of `pred` against any of `golds`.
pub fn f1(pred: &str, golds: &[String]) -> f64 {
    golds.iter().map(|g| f1_one(pred, g)).fold(0.0, f64::max)
}

fn f1_one(pred: &str, gold: &str) -> f64 {
    let (p, g) = (normalize(pred), normalize(gold));
    let (p, g): (Vec<&str>, Vec<&str>) = (p.split(' ').filter(|w| !w.is_empty()).collect(), g.split(' ').collect());
    if p.is_empty() || g.is_empty() || g == [""] {
        return f64::from(u8::from(p.is_empty() && (g.is_empty() || g == [""])));
    }
    let mut left = g.clone();
    let mut same = 0usize;
    for w in &p {
        if let Some(i) = left.iter().position(|x| x == w) {
            left.swap_remove(i);
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Whether `text` contains one of `golds` after normalisation, on word boundaries.
pub fn contains_answer(text: &str, golds: &[String]) -> bool {
    let t = format!(" {} ", normalize(text));
    golds.iter().map(|g| normalize(g)).any(|g| !g.is_empty() && t.contains(&format!(" {g} ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golds(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalisation_drops_case_punctuation_and_articles() {
        assert_eq!(normalize("The  Normans, of Normandy!"), "normans of normandy");
        assert_eq!(normalize("“an apple”"), "apple");
    }

    #[test]
    fn f1_and_exact_match_follow_squad() {
        let g = golds(&["William Farel", "Farel"]);
        assert_eq!(exact_match("william farel.", &g), 1.0);
        assert_eq!(exact_match("Farel went", &g), 0.0);
        assert!((f1("Farel went", &g) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(f1("Calvin", &g), 0.0);
        assert_eq!(f1("", &g), 0.0);
    }

    #[test]
    fn containment_respects_word_boundaries() {
        let g = golds(&["1066"]);
        assert!(contains_answer("It happened in 1066 [2].", &g));
        assert!(!contains_answer("It happened in 10660.", &g));
        assert!(!contains_answer("anything", &golds(&[""])));
    }
}
