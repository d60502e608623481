use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Where the encoder runs. `Cuda` always exists; without the `cuda` feature, asking for it
/// is an error that says how to get a CUDA build, so callers need no `cfg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA when a driver and GPU are found, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| Error::Device(format!("unknown device {s:?}: use auto, cpu, cuda or cuda:N"))),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Auto => write!(f, "auto"),
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Device {
    /// Resolves `Auto` and checks that a requested GPU can be used: a CUDA device is accepted
    /// only by builds (`--features cuda`) and machines (driver, NVRTC, a GPU) that have one.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Device::Cpu => Ok(Device::Cpu),
            Device::Auto => Ok(match cuda_probe(0) {
                Ok(()) => Device::Cuda(0),
                Err(why) => {
                    tracing::info!(reason = %why, "no usable CUDA device, encoding on the CPU");
                    Device::Cpu
                }
            }),
            Device::Cuda(n) => cuda_probe(n).map(|()| Device::Cuda(n)),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_probe(ordinal: usize) -> Result<()> {
    sousuo_kernels::cuda::probe(ordinal).map_err(|e| Error::Device(format!("cannot use cuda:{ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_probe(_ordinal: usize) -> Result<()> {
    Err(Error::Device(sousuo_kernels::Error::NotCompiledWithCuda.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
        assert!("gpu".parse::<Device>().is_err());
        assert!("cuda:x".parse::<Device>().is_err());
    }

    #[test]
    fn auto_falls_back_to_cpu_without_a_gpu() {
        // CI machines have no GPU: auto must still give a usable device.
        let d = Device::Auto.resolve().unwrap();
        assert!(matches!(d, Device::Cpu | Device::Cuda(_)));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build() {
        let err = Device::Cuda(0).resolve().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
