//! A BERT encoder's forward pass on a GPU: cuBLAS GEMMs (f16 inputs and outputs, f32
//! accumulation, `cublasGemmEx`) and the NVRTC kernels of `cuda/bert.cu`.
//!
//! Tokens are packed without padding, as in the CPU forward pass; weights are uploaded once in
//! f16 (biases and LayerNorm parameters stay f32). [`CudaBert::enqueue`] queues a batch on the
//! stream and returns at once, so the caller can prepare the next batch while the GPU works;
//! [`Pending::wait`] copies the sentence vectors back.

use crate::cuda::{cuda_err, probe};
use crate::{Error, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use half::f16;
use std::sync::Arc;

/// The CUDA C source of the BERT kernels, embedded in the binary.
pub const BERT_SOURCE: &str = include_str!("../cuda/bert.cu");

/// The kernels compiled for one model: the attention kernel keeps a head's query and
/// accumulator in registers, so the head width is a compile-time constant of each build.
fn compile_for_head_width(dh: usize) -> Result<cudarc::nvrtc::Ptx> {
    if dh == 0 || dh > 128 {
        return Err(Error::Cuda(format!("attention heads of {dh} dims (the CUDA kernel takes 1 to 128)")));
    }
    crate::cuda::compile(&format!("#define ATT_HEAD_DIM {dh}\n{BERT_SOURCE}"))
}

/// The shape of the model.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Vocabulary size.
    pub vocab: usize,
    /// Width of the hidden states.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Longest sequence the position embeddings cover.
    pub max_positions: usize,
    /// Epsilon of the layer norms.
    pub eps: f32,
}

/// One layer's weights on the host, dense matrices `[out x in]` row-major, Q/K/V stacked.
pub struct HostLayer<'a> {
    /// Fused query, key and value projection, `[3 * hidden, hidden]`.
    pub qkv_w: &'a [f32],
    /// Its bias.
    pub qkv_b: &'a [f32],
    /// Attention output projection.
    pub out_w: &'a [f32],
    /// Its bias.
    pub out_b: &'a [f32],
    /// First layer norm's scale.
    pub ln1_g: &'a [f32],
    /// First layer norm's shift.
    pub ln1_b: &'a [f32],
    /// Feed-forward up projection.
    pub ff1_w: &'a [f32],
    /// Its bias.
    pub ff1_b: &'a [f32],
    /// Feed-forward down projection.
    pub ff2_w: &'a [f32],
    /// Its bias.
    pub ff2_b: &'a [f32],
    /// Second layer norm's scale.
    pub ln2_g: &'a [f32],
    /// Second layer norm's shift.
    pub ln2_b: &'a [f32],
}

/// The model's weights on the host (borrowed; uploaded by [`CudaBert::new`]).
pub struct HostWeights<'a> {
    /// The model's shape.
    pub shape: Shape,
    /// Word embeddings, `[vocab, hidden]`.
    pub word: &'a [f32],
    /// Position embeddings, `[max_positions, hidden]`.
    pub position: &'a [f32],
    /// The token-type-0 row.
    pub type0: &'a [f32],
    /// Embedding layer norm's scale.
    pub emb_ln_g: &'a [f32],
    /// Embedding layer norm's shift.
    pub emb_ln_b: &'a [f32],
    /// The transformer layers, in order.
    pub layers: Vec<HostLayer<'a>>,
}

struct DeviceLayer {
    qkv_w: CudaSlice<f16>,
    qkv_b: CudaSlice<f32>,
    out_w: CudaSlice<f16>,
    out_b: CudaSlice<f32>,
    ln1_g: CudaSlice<f32>,
    ln1_b: CudaSlice<f32>,
    ff1_w: CudaSlice<f16>,
    ff1_b: CudaSlice<f32>,
    ff2_w: CudaSlice<f16>,
    ff2_b: CudaSlice<f32>,
    ln2_g: CudaSlice<f32>,
    ln2_b: CudaSlice<f32>,
}

struct Functions {
    embed: CudaFunction,
    add_bias: CudaFunction,
    bias_gelu: CudaFunction,
    residual_ln: CudaFunction,
    attention: CudaFunction,
    pool: CudaFunction,
}

/// A BERT encoder resident on one GPU.
pub struct CudaBert {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    f: Functions,
    shape: Shape,
    word: CudaSlice<f16>,
    position: CudaSlice<f16>,
    type0: CudaSlice<f16>,
    emb_ln_g: CudaSlice<f32>,
    emb_ln_b: CudaSlice<f32>,
    layers: Vec<DeviceLayer>,
}

/// A batch queued on the GPU.
pub struct Pending {
    stream: Arc<CudaStream>,
    out: CudaSlice<f32>,
}

impl Pending {
    /// Waits for the batch and returns its `sequences x hidden` L2-normalised vectors.
    pub fn wait(self) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(&self.out).map_err(cuda_err)
    }
}

fn check(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Cuda(format!("{what} has {got} values, the shape needs {want}")));
    }
    Ok(())
}

fn c_int(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Cuda(format!("{v} is too large for a CUDA launch")))
}

fn grid_1d(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

impl CudaBert {
    /// Compiles the kernels for GPU `ordinal` and uploads the weights (dense ones as f16).
    pub fn new(ordinal: usize, w: &HostWeights<'_>) -> Result<Self> {
        probe(ordinal)?;
        let s = w.shape;
        let (h, i) = (s.hidden, s.intermediate);
        if s.heads == 0 || !h.is_multiple_of(s.heads) {
            return Err(Error::Cuda(format!("{} heads do not divide hidden size {h}", s.heads)));
        }
        check("word embeddings", w.word.len(), s.vocab * h)?;
        check("position embeddings", w.position.len(), s.max_positions * h)?;
        check("token type 0", w.type0.len(), h)?;
        check("embedding LayerNorm", w.emb_ln_g.len() + w.emb_ln_b.len(), 2 * h)?;
        for l in &w.layers {
            check("qkv weight", l.qkv_w.len(), 3 * h * h)?;
            check("qkv bias", l.qkv_b.len(), 3 * h)?;
            check("attention output weight", l.out_w.len(), h * h)?;
            check("intermediate weight", l.ff1_w.len(), i * h)?;
            check("intermediate bias", l.ff1_b.len(), i)?;
            check("output weight", l.ff2_w.len(), h * i)?;
            for (name, v) in [
                ("attention output bias", l.out_b),
                ("LayerNorm", l.ln1_g),
                ("LayerNorm", l.ln1_b),
                ("output bias", l.ff2_b),
                ("LayerNorm", l.ln2_g),
                ("LayerNorm", l.ln2_b),
            ] {
                check(name, v.len(), h)?;
            }
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err)?;
        let stream = ctx.new_stream().map_err(cuda_err)?;
        let blas = CudaBlas::new(stream.clone()).map_err(cuda_err)?;
        let ptx = compile_for_head_width(s.hidden / s.heads.max(1))?;
        let module = ctx.load_module(ptx).map_err(cuda_err)?;
        let load = |name: &str| module.load_function(name).map_err(cuda_err);
        let f = Functions {
            embed: load("embed_layer_norm")?,
            add_bias: load("add_bias")?,
            bias_gelu: load("bias_gelu")?,
            residual_ln: load("bias_residual_layer_norm")?,
            attention: load("attention")?,
            pool: load("pool_l2")?,
        };
        let half = |v: &[f32]| -> Result<CudaSlice<f16>> {
            let host: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            stream.clone_htod(&host).map_err(cuda_err)
        };
        let full = |v: &[f32]| -> Result<CudaSlice<f32>> { stream.clone_htod(v).map_err(cuda_err) };
        let mut layers = Vec::with_capacity(w.layers.len());
        for l in &w.layers {
            layers.push(DeviceLayer {
                qkv_w: half(l.qkv_w)?,
                qkv_b: full(l.qkv_b)?,
                out_w: half(l.out_w)?,
                out_b: full(l.out_b)?,
                ln1_g: full(l.ln1_g)?,
                ln1_b: full(l.ln1_b)?,
                ff1_w: half(l.ff1_w)?,
                ff1_b: full(l.ff1_b)?,
                ff2_w: half(l.ff2_w)?,
                ff2_b: full(l.ff2_b)?,
                ln2_g: full(l.ln2_g)?,
                ln2_b: full(l.ln2_b)?,
            });
        }
        Ok(CudaBert {
            word: half(w.word)?,
            position: half(w.position)?,
            type0: half(w.type0)?,
            emb_ln_g: full(w.emb_ln_g)?,
            emb_ln_b: full(w.emb_ln_b)?,
            layers,
            f,
            shape: s,
            blas,
            stream,
        })
    }

    /// Embeds one batch and waits for it.
    pub fn forward(&self, seqs: &[&[u32]], cls: bool) -> Result<Vec<f32>> {
        self.enqueue(seqs, cls)?.wait()
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(cuda_err)
    }

    /// Queues one batch (token ids per sequence, special tokens included) and returns at once.
    pub fn enqueue(&self, seqs: &[&[u32]], cls: bool) -> Result<Pending> {
        let s = self.shape;
        let (h, inter, heads) = (s.hidden, s.intermediate, s.heads);
        let dh = h / heads;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut offsets = Vec::with_capacity(seqs.len());
        let mut lens = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if seq.is_empty() || seq.len() > s.max_positions {
                return Err(Error::Cuda(format!(
                    "a sequence of {} tokens (the model takes 1 to {})",
                    seq.len(),
                    s.max_positions
                )));
            }
            if let Some(&bad) = seq.iter().find(|&&id| id as usize >= s.vocab) {
                return Err(Error::Cuda(format!("token id {bad} is outside the vocabulary of {}", s.vocab)));
            }
            offsets.push(c_int(ids.len())?);
            lens.push(c_int(seq.len())?);
            ids.extend_from_slice(seq);
            positions.extend(0..seq.len() as u32);
        }
        let st = &self.stream;
        let tokens = ids.len();
        let mut out = st.alloc_zeros::<f32>(seqs.len() * h).map_err(cuda_err)?;
        if tokens == 0 {
            return Ok(Pending { stream: st.clone(), out });
        }
        let max_len = lens.iter().copied().max().unwrap_or(1);
        let h32 = c_int(h)?;
        let d_ids = st.clone_htod(&ids).map_err(cuda_err)?;
        let d_pos = st.clone_htod(&positions).map_err(cuda_err)?;
        let d_off = st.clone_htod(&offsets).map_err(cuda_err)?;
        let d_len = st.clone_htod(&lens).map_err(cuda_err)?;
        let mut x = st.alloc_zeros::<f16>(tokens * h).map_err(cuda_err)?;
        let mut qkv = st.alloc_zeros::<f16>(tokens * 3 * h).map_err(cuda_err)?;
        let mut ctx = st.alloc_zeros::<f16>(tokens * h).map_err(cuda_err)?;
        let mut tmp = st.alloc_zeros::<f16>(tokens * h).map_err(cuda_err)?;
        let mut mid = st.alloc_zeros::<f16>(tokens * inter).map_err(cuda_err)?;
        let row_cfg = |rows: usize| LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: (h * 4) as u32,
        };
        let eps = s.eps;
        {
            let mut b = st.launch_builder(&self.f.embed);
            b.arg(&d_ids).arg(&d_pos).arg(&self.word).arg(&self.position).arg(&self.type0);
            b.arg(&self.emb_ln_g).arg(&self.emb_ln_b).arg(&mut x).arg(&h32).arg(&eps);
            // SAFETY: one block per token; each reads its id's and position's rows (ids were
            // checked against the vocabulary, positions are below max_positions) and writes
            // its own row of `x` (tokens x h); shared memory holds h floats.
            unsafe { b.launch(row_cfg(tokens)) }.map_err(cuda_err)?;
        }
        let scale = 1.0 / (dh as f32).sqrt();
        // The tiled kernel: one thread per query row, 128 rows per block (its head width was
        // fixed when it was compiled).
        let rows_per_block = 128usize;
        let attn_cfg = LaunchConfig {
            grid_dim: ((max_len as usize).div_ceil(rows_per_block) as u32, heads as u32, seqs.len() as u32),
            block_dim: (rows_per_block as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        for l in &self.layers {
            self.linear(&x, &l.qkv_w, &mut qkv, tokens, h, 3 * h)?;
            self.bias(&self.f.add_bias, &mut qkv, &l.qkv_b, 3 * h, tokens)?;
            {
                let mut b = st.launch_builder(&self.f.attention);
                b.arg(&qkv).arg(&mut ctx).arg(&d_off).arg(&d_len).arg(&h32).arg(&scale);
                // SAFETY: sequence z spans rows offsets[z]..offsets[z]+lens[z] of qkv (3h wide)
                // and ctx (h wide), all inside `tokens`; a block past its sequence's length
                // returns, a thread past it reads its block's first row and writes nothing;
                // the kernel was compiled with ATT_HEAD_DIM = dh (`new`), so its static
                // shared tiles and per-head offsets match the h = heads * dh layout.
                unsafe { b.launch(attn_cfg) }.map_err(cuda_err)?;
            }
            // The attention context is consumed by the output projection, so its buffer
            // takes the normalised result, which then becomes the residual stream.
            self.linear(&ctx, &l.out_w, &mut tmp, tokens, h, h)?;
            self.residual_ln(&tmp, &x, &mut ctx, [&l.out_b, &l.ln1_g, &l.ln1_b], tokens, eps)?;
            std::mem::swap(&mut x, &mut ctx);
            self.linear(&x, &l.ff1_w, &mut mid, tokens, h, inter)?;
            self.bias(&self.f.bias_gelu, &mut mid, &l.ff1_b, inter, tokens)?;
            self.linear(&mid, &l.ff2_w, &mut tmp, tokens, inter, h)?;
            self.residual_ln(&tmp, &x, &mut ctx, [&l.ff2_b, &l.ln2_g, &l.ln2_b], tokens, eps)?;
            std::mem::swap(&mut x, &mut ctx);
        }
        {
            let cls32: i32 = cls.into();
            let mut b = st.launch_builder(&self.f.pool);
            b.arg(&x).arg(&d_off).arg(&d_len).arg(&mut out).arg(&h32).arg(&cls32);
            // SAFETY: one block per sequence, reading its rows of x and writing its row of
            // `out` (sequences x h); shared memory holds h floats.
            unsafe { b.launch(row_cfg(seqs.len())) }.map_err(cuda_err)?;
        }
        Ok(Pending { stream: st.clone(), out })
    }

    /// `y[tokens x d_out] = x[tokens x d_in] * w^T` with `w` `[d_out x d_in]` row-major: in
    /// cuBLAS's column-major terms `y^T = w * x^T` (w read transposed).
    fn linear(
        &self,
        x: &CudaSlice<f16>,
        w: &CudaSlice<f16>,
        y: &mut CudaSlice<f16>,
        tokens: usize,
        d_in: usize,
        d_out: usize,
    ) -> Result<()> {
        if x.len() < tokens * d_in || w.len() != d_in * d_out || y.len() < tokens * d_out {
            return Err(Error::Cuda(format!("linear {d_in} -> {d_out}: buffer sizes do not match")));
        }
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: c_int(d_out)?,
            n: c_int(tokens)?,
            k: c_int(d_in)?,
            alpha: f16::ONE,
            lda: c_int(d_in)?,
            ldb: c_int(d_in)?,
            beta: f16::ZERO,
            ldc: c_int(d_out)?,
        };
        // SAFETY: A is w (d_in x d_out column-major, lda = d_in), B is x (d_in x tokens,
        // ldb = d_in), C is y (d_out x tokens, ldc = d_out); the sizes were checked above.
        unsafe { self.blas.gemm(cfg, w, x, y) }.map_err(cuda_err)
    }

    fn bias(
        &self,
        f: &CudaFunction,
        x: &mut CudaSlice<f16>,
        bias: &CudaSlice<f32>,
        cols: usize,
        rows: usize,
    ) -> Result<()> {
        let total = rows * cols;
        if bias.len() != cols || x.len() < total {
            return Err(Error::Cuda("bias kernel: buffer sizes do not match".into()));
        }
        let (cols32, total64) = (c_int(cols)?, total as i64);
        let mut b = self.stream.launch_builder(f);
        b.arg(x).arg(bias).arg(&cols32).arg(&total64);
        // SAFETY: a grid-stride loop over `total` elements of x, which holds at least that
        // many; bias holds `cols` values, indexed modulo cols.
        unsafe { b.launch(grid_1d(total)) }.map_err(cuda_err)?;
        Ok(())
    }

    /// `out = LayerNorm(y + bias + residual) * gamma + beta`, row by row (`params`: bias,
    /// gamma, beta).
    fn residual_ln(
        &self,
        y: &CudaSlice<f16>,
        residual: &CudaSlice<f16>,
        out: &mut CudaSlice<f16>,
        params: [&CudaSlice<f32>; 3],
        tokens: usize,
        eps: f32,
    ) -> Result<()> {
        let h = self.shape.hidden;
        if y.len() < tokens * h
            || residual.len() < tokens * h
            || out.len() < tokens * h
            || params.iter().any(|p| p.len() != h)
        {
            return Err(Error::Cuda("residual LayerNorm: buffer sizes do not match".into()));
        }
        let h32 = c_int(h)?;
        let cfg =
            LaunchConfig { grid_dim: (tokens as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: (h * 4) as u32 };
        let mut b = self.stream.launch_builder(&self.f.residual_ln);
        b.arg(y).arg(residual).arg(params[0]).arg(params[1]).arg(params[2]).arg(out).arg(&h32).arg(&eps);
        // SAFETY: one block per row of y, residual and out (tokens x h each, checked, three
        // distinct buffers); bias, gamma and beta hold h values; shared memory holds h floats.
        unsafe { b.launch(cfg) }.map_err(cuda_err)?;
        Ok(())
    }
}
