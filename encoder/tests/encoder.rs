//! The encoder against an independent implementation (scripts/golden_encoder.py, numpy),
//! and its semantic and batching invariants, with the real all-MiniLM-L6-v2.

mod common;

use common::{cosine, encoder, minilm_dir};
use serde::Deserialize;
use sousuo_encoder::{Batching, Encoder, EncoderOptions};

#[derive(Deserialize)]
struct Golden {
    max_len: usize,
    sentences: Vec<GoldenSentence>,
}

#[derive(Deserialize)]
struct GoldenSentence {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn golden() -> Golden {
    serde_json::from_str(include_str!("fixtures/golden.json")).expect("golden.json parses")
}

#[test]
fn matches_the_independent_numpy_reference() {
    let g = golden();
    assert_eq!(g.sentences.len(), 20);
    let enc = encoder();
    assert_eq!(enc.max_len(), g.max_len);
    assert_eq!(enc.dim(), 384);
    let texts: Vec<&str> = g.sentences.iter().map(|s| s.text.as_str()).collect();
    let ids = enc.tokenize(&texts).unwrap();
    let got = enc.encode(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for (i, s) in g.sentences.iter().enumerate() {
        assert_eq!(ids[i], s.ids, "token ids of {:?}", s.text);
        let c = cosine(got.row(i), &s.embedding);
        assert!(c >= 0.9999, "cosine {c} for {:?}", s.text);
    }
}

#[test]
fn long_input_is_truncated_to_the_model_limit() {
    let enc = encoder();
    let long = "retrieval ".repeat(2000);
    let ids = enc.tokenize(&[&long]).unwrap();
    assert_eq!(ids[0].len(), 256);
    assert!(enc.count_tokens(&long).unwrap() >= 2000, "count_tokens does not truncate");
}

#[test]
fn vectors_are_unit_length_and_semantic() {
    let enc = encoder();
    let e = enc
        .encode(&["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."])
        .unwrap();
    for row in e.rows() {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    let bread = cosine(e.row(0), e.row(1));
    let horse = cosine(e.row(0), e.row(2));
    assert!(bread > horse, "eating/bread {bread} should beat eating/horse {horse}");
}

#[test]
fn batch_results_equal_one_at_a_time_whatever_the_batch() {
    let g = golden();
    let texts: Vec<&str> = g.sentences.iter().map(|s| s.text.as_str()).collect();
    let enc = encoder();
    let singles: Vec<Vec<f32>> = texts.iter().map(|t| enc.encode(&[t]).unwrap().row(0).to_vec()).collect();
    // Several batch compositions: all at once, reversed, and a naive fixed-size encoder.
    let all = enc.encode(&texts).unwrap();
    let mut reversed = texts.clone();
    reversed.reverse();
    let rev = enc.encode(&reversed).unwrap();
    let fixed =
        Encoder::load(&minilm_dir(), EncoderOptions { batching: Batching::Fixed(3), ..Default::default() }).unwrap();
    let fix = fixed.encode(&texts).unwrap();
    let n = texts.len();
    for i in 0..n {
        for (what, row) in [("batch", all.row(i)), ("reversed", rev.row(n - 1 - i)), ("fixed-3", fix.row(i))] {
            let c = cosine(row, &singles[i]);
            assert!(c >= 0.99999, "{what}: cosine {c} for {:?}", texts[i]);
        }
    }
}

#[test]
fn concurrent_callers_share_one_model_and_get_their_own_rows() {
    let enc = encoder();
    let texts = ["alpha particles", "beta decay", "gamma rays", "delta wing"];
    let want: Vec<Vec<f32>> = texts.iter().map(|t| enc.encode(&[t]).unwrap().row(0).to_vec()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|k| {
                let enc = enc.clone();
                s.spawn(move || {
                    let order: Vec<&str> = (0..4).map(|i| texts[(i + k) % 4]).collect();
                    (k, enc.encode(&order).unwrap())
                })
            })
            .collect();
        for h in handles {
            let (k, got) = h.join().unwrap();
            for i in 0..4 {
                assert!(cosine(got.row(i), &want[(i + k) % 4]) >= 0.99999);
            }
        }
    });
}

#[test]
fn empty_input_gives_an_empty_matrix() {
    let e = encoder().encode(&[]).unwrap();
    assert!(e.is_empty());
    assert_eq!(e.dim(), 384);
}

/// Every CPU forward pass (candle's, and Sousuo's with both thread strategies) against the
/// numpy golden vectors, and Sousuo's against candle's: the kernels' CPU twins composed into
/// a whole model.
#[test]
fn every_cpu_forward_pass_matches_the_golden_vectors() {
    use sousuo_encoder::{Backend, Parallelism};
    let g = golden();
    let texts: Vec<&str> = g.sentences.iter().map(|s| s.text.as_str()).collect();
    let variants = [
        ("candle", Backend::Candle, Parallelism::Sequences, 1),
        ("native, 1 thread", Backend::Native, Parallelism::Sequences, 1),
        ("native, sequences on 2 threads", Backend::Native, Parallelism::Sequences, 2),
        ("native, matmuls on 2 threads", Backend::Native, Parallelism::Matmul, 2),
    ];
    let mut outputs = Vec::new();
    for (name, backend, parallelism, threads) in variants {
        let options = EncoderOptions { backend, parallelism, threads, ..Default::default() };
        let enc = Encoder::load(&minilm_dir(), options).unwrap();
        let got = enc.encode(&texts).unwrap();
        for (i, s) in g.sentences.iter().enumerate() {
            let c = cosine(got.row(i), &s.embedding);
            assert!(c >= 0.9999, "{name}: cosine {c} against the golden vector of {:?}", s.text);
        }
        outputs.push((name, got));
    }
    let candle = &outputs[0].1;
    for (name, got) in &outputs[1..] {
        for (i, text) in texts.iter().enumerate() {
            let c = cosine(got.row(i), candle.row(i));
            assert!(c >= 0.9999, "{name}: cosine {c} against candle for {text:?}");
        }
    }
}

/// Many small batches on 2 threads (the threads take them from one queue, the last ones cut
/// into pieces): every row comes back in its text's place, as one thread computes it, for
/// both precisions.
#[test]
fn many_batches_on_two_threads_keep_their_order() {
    use sousuo_encoder::{Backend, Precision};
    let g = golden();
    // Each text twice, so that batches hold repeated and different lengths.
    let texts: Vec<&str> = g.sentences.iter().chain(&g.sentences).map(|s| s.text.as_str()).collect();
    for precision in [Precision::F32, Precision::Int8] {
        let load = |threads| {
            let batching = Batching::TokenBudget { budget: 40, max_seqs: 3 };
            let options =
                EncoderOptions { backend: Backend::Native, precision, threads, batching, ..Default::default() };
            Encoder::load(&minilm_dir(), options).unwrap()
        };
        let (single, pair) = (load(1), load(2));
        let (one, two) = (single.encode(&texts).unwrap(), pair.encode(&texts).unwrap());
        assert!(pair.stats().batches >= 10, "{} batches", pair.stats().batches);
        for (i, text) in texts.iter().enumerate() {
            let c = cosine(one.row(i), two.row(i));
            assert!(c >= 0.99999, "{precision}: cosine {c} between 1 and 2 threads for {text:?}");
            let twin = (i + g.sentences.len()) % texts.len();
            assert!(cosine(two.row(i), two.row(twin)) >= 0.99999, "{precision}: {text:?} and its copy differ");
        }
    }
}

/// The int8 path's quality gate: cosine >= 0.99 to the f32 vectors (and to numpy's golden
/// ones) on the golden sentences, and (near-)identical nearest neighbours among them.
#[test]
fn int8_vectors_stay_close_to_f32() {
    use sousuo_encoder::{Backend, Precision};
    let g = golden();
    let texts: Vec<&str> = g.sentences.iter().map(|s| s.text.as_str()).collect();
    let int8 = Encoder::load(
        &minilm_dir(),
        EncoderOptions { backend: Backend::Native, precision: Precision::Int8, ..Default::default() },
    )
    .unwrap();
    assert_eq!(int8.precision(), Precision::Int8);
    let q = int8.encode(&texts).unwrap();
    let f = encoder().encode(&texts).unwrap();
    let worst = (0..texts.len()).map(|i| cosine(q.row(i), f.row(i))).fold(1.0f32, f32::min);
    eprintln!("int8 vs f32: lowest cosine {worst} over {} sentences", texts.len());
    for (i, s) in g.sentences.iter().enumerate() {
        let c = cosine(q.row(i), f.row(i));
        assert!(c >= 0.99, "int8 vs f32: cosine {c} for {:?}", s.text);
        assert!(cosine(q.row(i), &s.embedding) >= 0.99);
        let nearest = |e: &sousuo_encoder::Embeddings| {
            (0..texts.len())
                .filter(|&j| j != i)
                .max_by(|&a, &b| cosine(e.row(i), e.row(a)).total_cmp(&cosine(e.row(i), e.row(b))))
        };
        // The same nearest neighbour, or one the f32 model finds as near (within 0.02).
        let (pick, best) = (nearest(&q).unwrap(), nearest(&f).unwrap());
        let (got, want) = (cosine(f.row(i), f.row(pick)), cosine(f.row(i), f.row(best)));
        assert!(want - got <= 0.02, "nearest neighbour of {:?}: {got} vs {want}", s.text);
    }
    // int8 needs the native forward pass.
    let err = Encoder::load(
        &minilm_dir(),
        EncoderOptions { backend: Backend::Candle, precision: Precision::Int8, ..Default::default() },
    )
    .err()
    .expect("candle has no int8 path")
    .to_string();
    assert!(err.contains("int8"), "{err}");
}

/// The native forward pass on random weights of another shape (odd widths, a head size that
/// is not a power of two, mixed lengths in one packed batch) against candle's.
#[test]
fn native_forward_matches_candle_on_other_shapes() {
    use sousuo_encoder::weights::{BertShape, BertWeights};
    use sousuo_encoder::{Parallelism, Pooling, Precision, RawKind, RawModel};
    let shape = BertShape {
        vocab: 97,
        hidden: 60,
        layers: 3,
        heads: 5,
        intermediate: 130,
        max_positions: 70,
        type_vocab: 2,
        eps: 1e-12,
    };
    let w = BertWeights::random(shape, 7);
    let seqs: Vec<Vec<u32>> = (1..=9).map(|k| (0..k * 7).map(|i| ((i * 31 + k * 5) % 97) as u32).collect()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let want = RawModel::new(&w, pooling, RawKind::Candle).unwrap().forward(&refs).unwrap();
        for parallelism in [Parallelism::Sequences, Parallelism::Matmul] {
            let native =
                RawModel::new(&w, pooling, RawKind::Native { threads: 2, parallelism, precision: Precision::F32 })
                    .unwrap();
            let got = native.forward(&refs).unwrap();
            for (i, (a, b)) in got.chunks(60).zip(want.chunks(60)).enumerate() {
                let c = cosine(a, b);
                assert!(c >= 0.9999, "{pooling:?} {parallelism:?}: sequence {i}: cosine {c}");
            }
        }
    }
    // Bad ids are an error, not a panic.
    let native = RawModel::new(
        &w,
        Pooling::Mean,
        RawKind::Native { threads: 1, parallelism: Parallelism::Sequences, precision: Precision::F32 },
    )
    .unwrap();
    let err = native.forward(&[&[1, 500]]).unwrap_err().to_string();
    assert!(err.contains("500"), "{err}");
}

#[test]
fn a_gpu_that_is_not_there_is_a_clear_error() {
    use sousuo_encoder::{Device, RawKind, RawModel};
    if Device::Cuda(0).resolve().is_ok() {
        return; // a machine with a GPU: the CUDA tests cover it
    }
    let err = Encoder::load(&minilm_dir(), EncoderOptions { device: Device::Cuda(0), ..Default::default() })
        .err()
        .expect("no GPU here")
        .to_string();
    assert!(err.contains("CUDA") || err.contains("cuda"), "{err}");
    let w = sousuo_encoder::weights::BertWeights::random(
        sousuo_encoder::weights::BertShape::from_config(&minilm_dir().config).unwrap(),
        1,
    );
    assert!(RawModel::new(&w, sousuo_encoder::Pooling::Mean, RawKind::Cuda(0)).is_err());
    // auto falls back to the CPU and encodes
    let enc = Encoder::load(&minilm_dir(), EncoderOptions { device: Device::Auto, ..Default::default() }).unwrap();
    assert_eq!(enc.encode(&["fallback"]).unwrap().len(), 1);
}
