//! `annal import` and `annal export`: vectors in and out of an index, as `.fvecs`
//! (TEXMEX: per row an `i32` dimension then that many `f32`, little-endian), `.npy`
//! (float32, 2-D, C order) or JSON lines (`{"id", "vector", "metadata", "partition"}`).
//!
//! `.fvecs` and `.npy` carry no ids: export writes them beside the file as `FILE.ids`
//! (one per line, in row order) and import reads that file when it is there (or
//! `--ids FILE`), else names rows by number (`--id-prefix` + row, from 0).
//!
//! Import goes through the engine (the server must be stopped: it holds the data
//! directory), one `VectorsUpserted` event per batch, so a batch is in whole or not at
//! all; a re-run skips every id already in the index, so an interrupted import is
//! finished by running it again. Export reads the log read-only (replay from the newest
//! snapshot), so it runs beside nothing and changes nothing.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal_engine::{Engine, EngineConfig, HnswConfig, Metric, VectorItem, Wait};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::common::{buckets, held_message, offline, Result};
use super::progress::Progress;

/// How long import waits at the end for its last batches to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(600);

/// A file format of import and export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// TEXMEX `.fvecs`.
    Fvecs,
    /// NumPy `.npy`, float32, 2-D.
    Npy,
    /// JSON lines, one record per line.
    Jsonl,
}

impl Format {
    /// The format `--format` names, or the file's extension implies.
    ///
    /// # Errors
    /// Neither says.
    pub fn of(path: &Path, given: Option<Format>) -> Result<Format> {
        if let Some(f) = given {
            return Ok(f);
        }
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("fvecs") => Ok(Format::Fvecs),
            Some("npy") => Ok(Format::Npy),
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
            _ => Err(format!("{}: cannot tell the format from the extension; give --format", path.display())
                .into()),
        }
    }
}

/// One row read from a file: its number (from 0), id, vector and the rest.
struct Row {
    number: u64,
    id: String,
    vector: Vec<f32>,
    metadata: Option<String>,
    partition: Option<String>,
}

/// Rows of a file, with the total if the format tells it, and the unit progress is
/// counted in.
struct Rows {
    iter: Box<dyn Iterator<Item = Result<Row>>>,
    total: Option<u64>,
    dimension: Option<u32>,
}

/// Flags of `annal import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// The index; created with the file's dimension if missing.
    #[arg(long)]
    pub index: String,
    /// The file.
    pub file: PathBuf,
    /// Its format (default: from the extension: .fvecs, .npy, .jsonl).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Ids of `.fvecs` / `.npy` rows, one per line (default: FILE.ids if present,
    /// else row numbers).
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// The JSON field holding a JSON line's id.
    #[arg(long, default_value = "id")]
    pub id_field: String,
    /// Name rows by their number (from 0), ignoring ids in the file.
    #[arg(long)]
    pub row_ids: bool,
    /// Prefix of ids made from row numbers.
    #[arg(long, default_value = "")]
    pub id_prefix: String,
    /// Metric of an index the import creates: l2, cosine or ip.
    #[arg(long, default_value = "cosine", value_parser = parse_metric)]
    pub metric: Metric,
    /// Records per event (each batch is all or nothing).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// The actor recorded in the log.
    #[arg(long, default_value = "annal-import")]
    pub actor: String,
    /// The server's bucket configuration file, where its snapshots and archive
    /// segments are not in the default local bucket.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
}

fn parse_metric(text: &str) -> std::result::Result<Metric, String> {
    [Metric::L2, Metric::Cosine, Metric::Ip]
        .into_iter()
        .find(|m| m.name() == text)
        .ok_or_else(|| format!("{text:?}: one of l2, cosine, ip"))
}

/// `annal import`.
pub fn import(args: &ImportArgs) -> Result<ExitCode> {
    let format = Format::of(&args.file, args.format)?;
    let rows = open_rows(args, format)?;
    if !args.data.join(annal_engine::LOG_FILE).exists() {
        std::fs::create_dir_all(&args.data)?;
    }
    let buckets = buckets(args.buckets_config.as_deref())?;
    let engine =
        Engine::open(&args.data, EngineConfig { buckets, ..EngineConfig::default() }).map_err(|error| {
            let path = args.data.join(annal_engine::LOG_FILE);
            match error {
                annal_engine::Error::Log(log) => held_message(
                    &path,
                    log,
                    "stop it first, or load through the server (the Python client's upsert)",
                ),
                other => other.into(),
            }
        })?;
    let result = import_into(&engine, args, rows);
    let closed = engine.close();
    let code = result?;
    closed?;
    Ok(code)
}

fn import_into(engine: &Engine, args: &ImportArgs, rows: Rows) -> Result<ExitCode> {
    let started = Instant::now();
    let present: HashSet<Arc<str>> = match engine.ids(&args.index) {
        Ok(ids) => ids.into_iter().collect(),
        Err(annal_engine::Error::IndexNotFound { .. }) => {
            let dimension = match rows.dimension {
                Some(d) => d,
                None => return Err(format!("{}: no rows to import", args.file.display()).into()),
            };
            engine.create_index(&args.actor, &args.index, dimension, args.metric, HnswConfig::default())?;
            tracing::info!(
                index = args.index.as_str(),
                dimension,
                metric = args.metric.name(),
                "created the index"
            );
            HashSet::new()
        }
        Err(other) => return Err(other.into()),
    };
    let already = present.len();
    let batch_size = usize::try_from(args.batch).unwrap_or(1000);
    let mut progress = Progress::new(format!("import into {}", args.index), "rows", rows.total);
    let mut batch: Vec<VectorItem> = Vec::with_capacity(batch_size);
    let mut batch_rows: Vec<u64> = Vec::with_capacity(batch_size);
    let mut in_batch: HashSet<String> = HashSet::new();
    // Ids this run imported (or queued), so that a repeat in the file is skipped.
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    let (mut read, mut skipped, mut imported, mut events, mut last_seq) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut repeated = 0u64;
    let mut flush = |batch: &mut Vec<VectorItem>,
                     batch_rows: &mut Vec<u64>,
                     in_batch: &mut HashSet<String>|
     -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let items = std::mem::take(batch);
        match engine.upsert_with(&args.actor, &args.index, items, Wait::Durable) {
            Ok(up) => {
                last_seq = up.seq;
                imported += n;
                events += 1;
            }
            Err(annal_engine::Error::Invalid(invalid)) => {
                // `items[i]....` names the batch's item: say which row of the file it was.
                let row = invalid
                    .field
                    .strip_prefix("items[")
                    .and_then(|rest| rest.split(']').next())
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| batch_rows.get(i))
                    .copied();
                let at = row.map_or_else(String::new, |r| format!("row {r}: "));
                return Err(format!(
                    "{at}{invalid} (nothing of this batch was imported; {imported} rows were before it)"
                )
                .into());
            }
            Err(other) => return Err(other.into()),
        }
        batch_rows.clear();
        in_batch.clear();
        Ok(())
    };
    for row in rows.iter {
        let row = row?;
        read += 1;
        if present.contains(row.id.as_str()) {
            skipped += 1;
        } else if in_batch.contains(&row.id) || !seen.insert(Arc::from(row.id.as_str())) {
            // An id the file repeats: its first row wins, in one run as in a resumed
            // one (which skips every id already in).
            repeated += 1;
        } else {
            in_batch.insert(row.id.clone());
            batch_rows.push(row.number);
            batch.push(VectorItem {
                id: row.id,
                vector: row.vector,
                metadata: row.metadata,
                partition: row.partition,
            });
            if batch.len() >= batch_size {
                flush(&mut batch, &mut batch_rows, &mut in_batch)?;
            }
        }
        progress.set(read);
    }
    flush(&mut batch, &mut batch_rows, &mut in_batch)?;
    if last_seq > 0 {
        engine.wait_for_seq(last_seq, APPLY_WAIT)?;
    }
    progress.finish();
    if repeated > 0 {
        tracing::warn!(rows = repeated, "the file repeats ids; the first row of each was kept");
    }
    let secs = started.elapsed().as_secs_f64();
    let report = json!({
        "index": args.index,
        "rows": read,
        "imported": imported,
        "skipped_present": skipped,
        "skipped_repeated": repeated,
        "present_before": already,
        "events": events,
        "last_seq": last_seq,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "rows_per_second": if secs > 0.0 { (imported as f64 / secs).round() } else { 0.0 },
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn open_rows(args: &ImportArgs, format: Format) -> Result<Rows> {
    let ids = match format {
        Format::Jsonl => None,
        Format::Fvecs | Format::Npy if args.row_ids => None,
        Format::Fvecs | Format::Npy => {
            let sidecar = ids_path(&args.file);
            match args.ids.as_deref() {
                Some(path) => Some(read_ids(path)?),
                None if sidecar.exists() => {
                    tracing::info!(ids = %sidecar.display(), "ids from the file beside the vectors");
                    Some(read_ids(&sidecar)?)
                }
                None => None,
            }
        }
    };
    let ids_lines = ids.as_ref().map(Vec::len);
    let prefix = args.id_prefix.to_owned();
    let id_of = move |number: u64| -> Result<String> {
        match &ids {
            Some(ids) => ids
                .get(number as usize)
                .cloned()
                .ok_or_else(|| format!("row {number}: the ids file has only {} lines", ids.len()).into()),
            None => Ok(format!("{prefix}{number}")),
        }
    };
    let rows = match format {
        Format::Fvecs => fvecs_rows(&args.file, id_of)?,
        Format::Npy => npy_rows(&args.file, id_of)?,
        Format::Jsonl => {
            jsonl_rows(&args.file, args.id_field.to_owned(), args.row_ids, args.id_prefix.to_owned())?
        }
    };
    // Checked before anything is written: a stale ids file would pair ids with the
    // wrong rows.
    if let (Some(lines), Some(total)) = (ids_lines, rows.total) {
        if lines as u64 != total {
            return Err(format!(
                "the ids file has {lines} lines and {} has {total} rows",
                args.file.display()
            )
            .into());
        }
    }
    Ok(rows)
}

/// `FILE.ids` beside `FILE`.
fn ids_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".ids");
    PathBuf::from(name)
}

fn read_ids(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn fvecs_rows(path: &Path, id_of: impl Fn(u64) -> Result<String> + 'static) -> Result<Rows> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; 4];
    if len == 0 {
        return Ok(Rows { iter: Box::new(std::iter::empty()), total: Some(0), dimension: None });
    }
    reader.read_exact(&mut head)?;
    let dimension = i32::from_le_bytes(head);
    let dim = usize::try_from(dimension).ok().filter(|d| *d > 0).ok_or_else(|| {
        format!("{}: row 0 declares dimension {dimension}; not an .fvecs file?", path.display())
    })?;
    let row_bytes = 4 + 4 * dim as u64;
    if len % row_bytes != 0 {
        return Err(format!(
            "{}: {len} bytes is not a whole number of {row_bytes}-byte rows of dimension {dim}",
            path.display()
        )
        .into());
    }
    let total = len / row_bytes;
    let display = path.display().to_string();
    let mut number = 0u64;
    let mut first = true;
    let iter = std::iter::from_fn(move || {
        if number >= total {
            return None;
        }
        let row = (|| -> Result<Row> {
            if !first {
                reader.read_exact(&mut head)?;
                let d = i32::from_le_bytes(head);
                if usize::try_from(d).ok() != Some(dim) {
                    return Err(format!("{display}: row {number} declares dimension {d}, row 0 {dim}").into());
                }
            }
            first = false;
            let mut bytes = vec![0u8; 4 * dim];
            reader.read_exact(&mut bytes)?;
            let vector =
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok(Row { number, id: id_of(number)?, vector, metadata: None, partition: None })
        })();
        number += 1;
        Some(row)
    });
    Ok(Rows { iter: Box::new(iter), total: Some(total), dimension: u32::try_from(dim).ok() })
}

fn npy_rows(path: &Path, id_of: impl Fn(u64) -> Result<String> + 'static) -> Result<Rows> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let npy = npyz::NpyFile::new(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| format!("{}: not a .npy file: {e}", path.display()))?;
    let shape = npy.shape().to_vec();
    let [rows, dim] = shape[..] else {
        return Err(
            format!("{}: shape {shape:?}; a 2-D array (rows, dimension) is needed", path.display()).into()
        );
    };
    if npy.order() != npyz::Order::C {
        return Err(format!(
            "{}: Fortran order; save it in C order (numpy.ascontiguousarray)",
            path.display()
        )
        .into());
    }
    let dtype = npy.dtype();
    let data = npy
        .data::<f32>()
        .map_err(|e| format!("{}: dtype {}: float32 is needed ({e})", path.display(), dtype.descr()))?;
    let dim_usize = usize::try_from(dim)?;
    let mut values = data.into_iter();
    let mut number = 0u64;
    let iter = std::iter::from_fn(move || {
        if number >= rows {
            return None;
        }
        let row = (|| -> Result<Row> {
            let vector = (&mut values).take(dim_usize).collect::<std::io::Result<Vec<f32>>>()?;
            if vector.len() != dim_usize {
                return Err(format!("row {number}: the array ends early").into());
            }
            Ok(Row { number, id: id_of(number)?, vector, metadata: None, partition: None })
        })();
        number += 1;
        Some(row)
    });
    Ok(Rows { iter: Box::new(iter), total: Some(rows), dimension: u32::try_from(dim).ok() })
}

fn jsonl_rows(path: &Path, id_field: String, row_ids: bool, prefix: String) -> Result<Rows> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // The dimension of an index this import creates: the first line's.
    let dimension = {
        let mut first = String::new();
        BufReader::new(File::open(path)?).read_line(&mut first)?;
        serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v.get("vector").and_then(Value::as_array).map(Vec::len))
            .and_then(|n| u32::try_from(n).ok())
    };
    let display = path.display().to_string();
    let mut lines = BufReader::with_capacity(1 << 20, file).lines();
    let mut number = 0u64;
    let iter = std::iter::from_fn(move || loop {
        let line = lines.next()?;
        let this = number;
        number += 1;
        let parsed = (|| -> Result<Option<Row>> {
            let line = line?;
            if line.trim().is_empty() {
                return Ok(None);
            }
            let at = |what: String| format!("{display}: line {}: {what}", this + 1);
            // Top-level fields as raw JSON text: metadata goes in exactly as written
            // (key order, number spelling), the rest is parsed.
            let fields: std::collections::BTreeMap<&str, &serde_json::value::RawValue> =
                serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
            let parse = |name: &str| -> std::result::Result<Value, String> {
                match fields.get(name) {
                    Some(raw) => serde_json::from_str(raw.get()).map_err(|e| at(format!("{name}: {e}"))),
                    None => Ok(Value::Null),
                }
            };
            let id = if row_ids {
                format!("{prefix}{this}")
            } else {
                match parse(&id_field)? {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Null => {
                        return Err(at(format!("no {id_field:?} field (use --id-field, or --row-ids)")).into())
                    }
                    _ => return Err(at(format!("{id_field}: a string or a number is needed")).into()),
                }
            };
            let vector = parse("vector")?
                .as_array()
                .ok_or_else(|| at("vector: an array of numbers is needed".into()))?
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_f64().map(|f| f as f32).ok_or_else(|| at(format!("vector[{i}]: not a number")))
                })
                .collect::<std::result::Result<Vec<f32>, String>>()?;
            let metadata =
                fields.get("metadata").map(|raw| raw.get()).filter(|raw| *raw != "null").map(str::to_owned);
            let partition = match parse("partition")? {
                Value::Null => None,
                Value::String(p) => Some(p),
                _ => return Err(at("partition: a string is needed".into()).into()),
            };
            Ok(Some(Row { number: this, id, vector, metadata, partition }))
        })();
        match parsed {
            Ok(None) => continue,
            Ok(Some(row)) => return Some(Ok(row)),
            Err(e) => return Some(Err(e)),
        }
    });
    Ok(Rows { iter: Box::new(iter), total: None, dimension })
}

/// Flags of `annal export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Data directory (the server must not hold it).
    #[arg(long, env = "ANNAL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Bucket configuration file, where snapshots are not in the default local bucket.
    #[arg(long, env = "ANNAL_BUCKETS_CONFIG")]
    pub buckets_config: Option<PathBuf>,
    /// The index.
    #[arg(long)]
    pub index: String,
    /// The file written.
    pub file: PathBuf,
    /// Its format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The state as of this event (default: the last).
    #[arg(long)]
    pub as_of: Option<u64>,
}

/// `annal export`: every live record of an index, sorted by id, as the log's state
/// holds it (the newest snapshot plus the events after it, read-only).
pub fn export(args: &ExportArgs) -> Result<ExitCode> {
    let format = Format::of(&args.file, args.format)?;
    let source = offline(&args.data, args.buckets_config.as_deref())?;
    let last = source.last_seq()?;
    let upto = args.as_of.unwrap_or(last);
    if upto > last {
        return Err(format!("--as-of {upto}: the log ends at {last}").into());
    }
    let (mut replay, from) = match source.newest_snapshot(upto)?.0 {
        Some((replay, taken)) => (replay, taken.seq),
        None => (annal_engine::Replay::empty()?, 0),
    };
    let mut progress = Progress::new("replay", "events", Some(upto));
    progress.set(from);
    source.replay_into(&mut replay, upto, &mut |seq| progress.set(seq))?;
    progress.finish();
    let info = replay.get_index(&args.index)?;
    let records = replay.records(&args.index)?;
    drop(replay);
    let dim = info.params.dimension as usize;
    let mut progress = Progress::new(format!("export {}", args.index), "rows", Some(records.len() as u64));
    let with_metadata = records.iter().filter(|r| r.metadata.is_some() || r.partition.is_some()).count();
    let ids_file = matches!(format, Format::Fvecs | Format::Npy);
    if ids_file && with_metadata > 0 {
        tracing::warn!(
            records = with_metadata,
            "metadata and partitions are not written to .fvecs / .npy; use JSON lines to keep them"
        );
    }
    if let Some(bad) = records.iter().find(|r| r.id.contains('\n') || r.id.contains('\r')) {
        if ids_file {
            return Err(format!(
                "id {:?} holds a line break and cannot go in an ids file; export JSON lines",
                bad.id
            )
            .into());
        }
    }
    // Files are created only once the export is known to be possible.
    let create = |path: &Path| File::create(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut out = BufWriter::with_capacity(1 << 20, create(&args.file)?);
    let mut ids = if ids_file { Some(BufWriter::new(create(&ids_path(&args.file))?)) } else { None };
    match format {
        Format::Fvecs => {
            let head = i32::try_from(dim)?.to_le_bytes();
            for (i, r) in records.iter().enumerate() {
                out.write_all(&head)?;
                for v in &r.vector {
                    out.write_all(&v.to_le_bytes())?;
                }
                progress.set(i as u64 + 1);
            }
        }
        Format::Npy => {
            use npyz::WriterBuilder;
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[records.len() as u64, dim as u64])
                .writer(&mut out)
                .begin_nd()?;
            for (i, r) in records.iter().enumerate() {
                writer.extend(r.vector.iter().copied())?;
                progress.set(i as u64 + 1);
            }
            writer.finish()?;
        }
        Format::Jsonl => {
            for (i, r) in records.iter().enumerate() {
                // Metadata as stored, byte for byte but for whitespace: valid JSON holds
                // line breaks and tabs only between tokens, where a space does as well,
                // so each record stays one line.
                let metadata = r
                    .metadata
                    .as_deref()
                    .map_or_else(|| "null".to_owned(), |text| text.replace(['\n', '\r', '\t'], " "));
                let mut line = format!(
                    "{{\"id\":{},\"vector\":{},\"metadata\":{metadata}",
                    serde_json::to_string(&r.id)?,
                    serde_json::to_string(&r.vector)?
                );
                if let Some(p) = &r.partition {
                    line.push_str(&format!(",\"partition\":{}", serde_json::to_string(p)?));
                }
                line.push('}');
                writeln!(out, "{line}")?;
                progress.set(i as u64 + 1);
            }
        }
    }
    out.flush()?;
    if let Some(ids) = &mut ids {
        for r in &records {
            writeln!(ids, "{}", r.id)?;
        }
        ids.flush()?;
    }
    progress.finish();
    println!(
        "{}",
        json!({"index": args.index, "rows": records.len(), "as_of": upto, "file": args.file.display().to_string(),
               "ids_file": ids.map(|_| ids_path(&args.file).display().to_string())})
    );
    Ok(ExitCode::SUCCESS)
}
