//! The CUDA backend: the model's weights on one GPU, run by `sousuo_kernels::cuda_bert`.

use crate::weights::BertWeights;
use crate::{Pooling, Result};
use sousuo_kernels::cuda_bert::{CudaBert, HostLayer, HostWeights, Pending, Shape};

pub(crate) struct CudaModel {
    model: CudaBert,
    cls: bool,
    dim: usize,
}

impl CudaModel {
    pub(crate) fn new(ordinal: usize, w: &BertWeights, pooling: Pooling) -> Result<Self> {
        let s = w.shape;
        let host = HostWeights {
            shape: Shape {
                vocab: s.vocab,
                hidden: s.hidden,
                heads: s.heads,
                intermediate: s.intermediate,
                max_positions: s.max_positions,
                eps: s.eps,
            },
            word: &w.word,
            position: &w.position,
            type0: &w.token_type[..s.hidden.min(w.token_type.len())],
            emb_ln_g: &w.emb_ln_g,
            emb_ln_b: &w.emb_ln_b,
            layers: w
                .layers
                .iter()
                .map(|l| HostLayer {
                    qkv_w: &l.qkv_w,
                    qkv_b: &l.qkv_b,
                    out_w: &l.out_w,
                    out_b: &l.out_b,
                    ln1_g: &l.ln1_g,
                    ln1_b: &l.ln1_b,
                    ff1_w: &l.ff1_w,
                    ff1_b: &l.ff1_b,
                    ff2_w: &l.ff2_w,
                    ff2_b: &l.ff2_b,
                    ln2_g: &l.ln2_g,
                    ln2_b: &l.ln2_b,
                })
                .collect(),
        };
        let model = CudaBert::new(ordinal, &host)?;
        Ok(CudaModel { model, cls: pooling == Pooling::Cls, dim: s.hidden })
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn enqueue(&self, seqs: &[&[u32]]) -> Result<Pending> {
        Ok(self.model.enqueue(seqs, self.cls)?)
    }
}
