//! `roster verify`: a mirror exported as JSON lines, checked against the
//! directory's state digest (docs/digest.md).

use std::io::{BufRead, BufReader, Read};

use anyhow::{Context, anyhow};
use roster_client::verify::{Difference, Item, LocalState, verify};
use roster_digest::Kind;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use serde_json::{Value, json};

use crate::config::VerifyArgs;

/// The copy differs from the directory (the report is on stdout): exit
/// status 2, where 1 is any other failure. Returned rather than exiting
/// here, so that the process flushes its logs on the way out.
#[derive(Debug, thiserror::Error)]
#[error("the mirror differs from the directory")]
pub struct Drift;

impl Drift {
    pub const EXIT_STATUS: u8 = 2;
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let local = read_mirror(&args)?;
    let channel = super::connect(&args.client).await?;
    let mut client = DirectoryServiceClient::new(channel);
    let report = verify(&mut client, &args.directory, &local)
        .await
        .map_err(|s| anyhow!("GetStateDigest failed ({:?}): {}", s.code(), s.message()))?;
    let line = |d: &Difference| json!({"kind": d.kind.as_str(), "id": d.id, "local_version": d.local_version, "remote_version": d.remote_version});
    let pick = |f: fn(&Difference) -> bool| {
        report
            .differences
            .iter()
            .filter(|d| f(d))
            .map(line)
            .collect::<Vec<_>>()
    };
    let out = json!({
        "revision": report.revision,
        "items": local.len(),
        "calls": report.calls,
        "missing": pick(Difference::is_missing),
        "extra": pick(Difference::is_extra),
        "differing": pick(|d| !d.is_missing() && !d.is_extra()),
    });
    println!("{out}");
    if !report.differences.is_empty() {
        return Err(Drift.into());
    }
    Ok(())
}

fn read_mirror(args: &VerifyArgs) -> anyhow::Result<LocalState> {
    let input: Box<dyn Read> = if args.mirror.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.mirror)
                .with_context(|| format!("cannot open {}", args.mirror.display()))?,
        )
    };
    let mut state = LocalState::new();
    for (n, line) in BufReader::new(input).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let item = parse_item(&line).with_context(|| format!("line {}: {line}", n + 1))?;
        state.insert(&item);
    }
    Ok(state)
}

fn parse_item(line: &str) -> anyhow::Result<Item> {
    let v: Value = serde_json::from_str(line)?;
    let kind = v["kind"]
        .as_str()
        .and_then(Kind::parse)
        .ok_or_else(|| anyhow!("\"kind\" must be \"user\" or \"group\""))?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| anyhow!("\"id\" is missing"))?;
    let version = v["version"]
        .as_i64()
        .ok_or_else(|| anyhow!("\"version\" is missing"))?;
    let members = v["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Item {
        kind,
        id: id.to_owned(),
        version,
        members,
    })
}
