//! The `xpgm` command.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("usage: xpgm sim ...")
}
