//! `sousuo embed`: texts in, vectors out, in input order.

use crate::cli::{EmbedArgs, EmbedFormat, Global};
use crate::paths::load_encoder;
use crate::util::progress;
use anyhow::{bail, Context, Result};
use npyz::WriterBuilder;
use serde::Deserialize;
use sousuo_encoder::EncoderOptions;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};

/// Texts handed to the encoder per call: big enough for good batches, small enough for a
/// smooth progress bar and bounded memory in JSONL mode.
const CHUNK: usize = 512;

#[derive(Deserialize)]
struct InputLine {
    id: serde_json::Value,
    text: String,
}

pub fn run(g: &Global, args: EmbedArgs) -> Result<()> {
    let jsonl = args.jsonl || args.input.ends_with(".jsonl");
    let items = read_input(&args.input, jsonl)?;
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress(items.len() as u64, "embedded");
    if items.len() < 1000 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut matrix: Vec<f32> = Vec::new();
    for chunk in items.chunks(CHUNK) {
        let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let emb = encoder.encode(&texts)?;
        match args.format {
            EmbedFormat::Jsonl => {
                for ((id, _), row) in chunk.iter().zip(emb.rows()) {
                    serde_json::to_writer(&mut out, &serde_json::json!({ "id": id, "embedding": row }))?;
                    out.write_all(b"\n")?;
                }
            }
            EmbedFormat::Npy => matrix.extend_from_slice(emb.as_slice()),
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if args.format == EmbedFormat::Npy {
        let shape = [items.len() as u64, encoder.dim() as u64];
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut out).begin_nd()?;
        w.extend(matrix)?;
        w.finish()?;
    }
    out.flush()?;
    Ok(())
}

/// Reads `(id, text)` pairs: JSONL objects, or one text a line with its 0-based line index as id.
fn read_input(input: &str, jsonl: bool) -> Result<Vec<(serde_json::Value, String)>> {
    let reader: Box<dyn Read> = if input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(input).with_context(|| format!("cannot open {input}"))?)
    };
    let name = if input == "-" { "<stdin>" } else { input };
    let mut items = Vec::new();
    for (i, line) in BufReader::new(reader).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("cannot read {name}"))?;
        let line = String::from_utf8_lossy(&line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if jsonl {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<InputLine>(line) {
                Ok(v) => items.push((v.id, v.text)),
                Err(e) => bail!("{name}:{}: not a JSON object with \"id\" and \"text\": {e}", i + 1),
            }
        } else {
            items.push((serde_json::Value::from(i), line.to_string()));
        }
    }
    Ok(items)
}
