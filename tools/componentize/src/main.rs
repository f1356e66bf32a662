//! `componentize IN.wasm OUT.wasm [command|reactor|proxy]`: wraps a WASI
//! preview-1 core module into a preview-2 component with the preview-1 adapter
//! that matches wasmtime 48, so the sample modules also exist as components.
use anyhow::{bail, Context, Result};
use wasi_preview1_component_adapter_provider as adapters;
use wit_component::ComponentEncoder;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output) = match args.as_slice() {
        [i, o] | [i, o, _] => (i, o),
        _ => bail!("usage: componentize IN.wasm OUT.wasm [command|reactor|proxy]"),
    };
    let adapter = match args.get(2).map(String::as_str).unwrap_or("command") {
        "command" => adapters::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        "reactor" => adapters::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        "proxy" => adapters::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
        other => bail!("unknown adapter kind {other:?}: use command, reactor or proxy"),
    };
    let module = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(adapters::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter)?
        .encode()
        .with_context(|| format!("wrapping {input} into a component"))?;
    std::fs::write(output, component).with_context(|| format!("writing {output}"))?;
    Ok(())
}
