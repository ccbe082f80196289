//! `align completions SHELL`: shell completions for every command.

use clap::CommandFactory;

use crate::output::Failure;

/// Print shell completions. Example: align completions bash > /etc/bash_completion.d/align
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

pub(crate) fn run(Args { shell }: Args) -> Result<(), Failure> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "align", &mut std::io::stdout());
    Ok(())
}
