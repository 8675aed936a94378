//! One index's full-text (BM25) projection: a tantivy index in memory over its
//! documents' text and configured metadata string fields, with the rows that map
//! tantivy's documents back to records (id, metadata, partition) for answers and
//! filters.
//!
//! Every document version gets a fresh `key` (a fast field): an upsert deletes the
//! id's older versions by the `id` term and adds the new one, so tantivy's own delete
//! bitmaps and the rows always agree on what is live once committed. Changes are
//! committed lazily, before the next search or snapshot: an acknowledged write is
//! searchable by the next query, and a bulk load does not pay a commit per event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::directory::{Directory, RamDirectory};
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, WhitespaceTokenizer,
};
use tantivy::{
    DocAddress, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, TERMINATED,
};

use super::error::TextError;
use crate::event::{TextIndexCreated, TextTokenizer};

/// The analyzer's registered name.
const ANALYZER: &str = "annal";
/// The field holding a document's text (and its name in the query syntax).
pub const TEXT_FIELD: &str = "text";
/// Terms longer than this many bytes are dropped (tantivy's usual bound).
const TERM_BYTES_MAX: usize = 40;
/// The writer's indexing memory before it flushes a segment by itself.
const WRITER_MEMORY: usize = 32 * 1024 * 1024;
/// Times a snapshot re-reads the files when a background merge committed meanwhile.
const CAPTURE_ATTEMPTS: usize = 16;
/// tantivy's index-level file: the committed segments and their deletes.
const META_FILE: &str = "meta.json";
/// The files tantivy's garbage collection may delete (a JSON list of paths).
const MANAGED_FILE: &str = ".managed.json";

/// The stemmer languages, by API name.
pub const LANGUAGES: [(&str, Language); 18] = [
    ("arabic", Language::Arabic),
    ("danish", Language::Danish),
    ("dutch", Language::Dutch),
    ("english", Language::English),
    ("finnish", Language::Finnish),
    ("french", Language::French),
    ("german", Language::German),
    ("greek", Language::Greek),
    ("hungarian", Language::Hungarian),
    ("italian", Language::Italian),
    ("norwegian", Language::Norwegian),
    ("portuguese", Language::Portuguese),
    ("romanian", Language::Romanian),
    ("russian", Language::Russian),
    ("spanish", Language::Spanish),
    ("swedish", Language::Swedish),
    ("tamil", Language::Tamil),
    ("turkish", Language::Turkish),
];

/// The stemmer of an API language name.
pub fn language(name: &str) -> Option<Language> {
    LANGUAGES.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// A record as the text index knows it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: Arc<str>,
    /// The metadata text, as stored.
    pub(crate) metadata: Option<Arc<str>>,
    /// The same, parsed, for filters.
    pub(crate) parsed: Option<Arc<Value>>,
    pub(crate) partition: Option<Arc<str>>,
}

#[derive(Default)]
struct Rows {
    by_key: HashMap<u64, Row>,
    by_id: HashMap<Arc<str>, u64>,
    next_key: u64,
}

/// One keyword hit.
#[derive(Debug, Clone)]
pub struct KeywordHit {
    /// The record's id.
    pub id: Arc<str>,
    /// Its BM25 score (larger is better).
    pub score: f32,
    /// The share of the query's words it holds, each word weighted by its inverse
    /// document frequency: 1 when it holds all of them, 0 to 1.
    pub coverage: f32,
    /// Its metadata (JSON text), if any.
    pub metadata: Option<Arc<str>>,
    /// Its partition, if any.
    pub partition: Option<Arc<str>>,
}

/// BM25's statistics over the live documents only. tantivy's own count deleted
/// documents until a merge drops them, so its scores depend on how commits and merges
/// fell; these depend on the live documents alone, so replay, a snapshot restore and
/// a time-travel view score every document exactly as the live index did.
struct LiveStats<'a> {
    searcher: &'a tantivy::Searcher,
    /// Tokens per field over the live documents (by their field norms), computed once
    /// per searcher generation.
    tokens: &'a Tokens,
    /// Document frequencies asked so far in this search: the query's coverage
    /// ([`Words`]) asks before tantivy's BM25 weight asks again for the same terms.
    doc_freqs: Mutex<HashMap<Term, u64>>,
}

impl<'a> LiveStats<'a> {
    fn new(searcher: &'a tantivy::Searcher, tokens: &'a Tokens) -> Self {
        Self { searcher, tokens, doc_freqs: Mutex::new(HashMap::new()) }
    }
}

impl tantivy::query::Bm25StatisticsProvider for LiveStats<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        Ok(self.tokens.get(&field).copied().unwrap_or(0))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.searcher.num_docs())
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        if let Some(known) = self.doc_freqs.lock().get(term) {
            return Ok(*known);
        }
        let mut total = 0u64;
        for segment in self.searcher.segment_readers() {
            let inverted = segment.inverted_index(term.field())?;
            total += u64::from(match segment.alive_bitset() {
                None => inverted.doc_freq(term)?,
                Some(alive) => match inverted.read_postings(term, IndexRecordOption::Basic)? {
                    Some(postings) => postings.doc_freq_given_deletes(alive),
                    None => 0,
                },
            });
        }
        self.doc_freqs.lock().insert(term.clone(), total);
        Ok(total)
    }
}

/// BM25's inverse document frequency, as tantivy computes it
/// (`tantivy::query::bm25::idf`, which is not public).
fn idf(doc_freq: u64, doc_count: u64) -> f32 {
    let x = (doc_count.saturating_sub(doc_freq) as f32 + 0.5) / (doc_freq as f32 + 0.5);
    (1.0 + x).ln()
}

/// A query's words with their weights. A word's weight is its inverse document
/// frequency, counted in the field where it is most frequent (the text, usually: a
/// word absent from a short metadata field is not rare for that); a word no document
/// holds counts too, at the largest weight. The query's weight is their sum. A hit's
/// *coverage* is the share of that weight in the words it holds: 1 when it holds every
/// word, whatever their frequencies and its length ([`super::fusion`] weighs the two
/// sides by it). Words the query excludes (`-word`) are not among them; a query with
/// no other word (`*`, a range, only exclusions) is covered entirely by every hit.
struct Words<'q> {
    /// Each searched term, with the index of its word.
    terms: Vec<(&'q Term, usize)>,
    /// Each distinct word's weight.
    weights: Vec<f32>,
}

/// The terms of `query` a hit may hold: all but those under a `MustNot` clause.
fn wanted_terms<'q>(query: &'q dyn Query, out: &mut Vec<&'q Term>) {
    match query.downcast_ref::<BooleanQuery>() {
        Some(boolean) => {
            for (occur, clause) in boolean.clauses() {
                if *occur != Occur::MustNot {
                    wanted_terms(clause.as_ref(), out);
                }
            }
        }
        None => query.query_terms(&mut |term, _| out.push(term)),
    }
}

impl<'q> Words<'q> {
    fn of(query: &'q dyn Query, stats: &LiveStats<'_>) -> Result<Self, TextError> {
        use tantivy::query::Bm25StatisticsProvider;
        let mut all: Vec<&Term> = Vec::new();
        wanted_terms(query, &mut all);
        let docs = stats.total_num_docs()?;
        let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(all.len());
        let mut words = Words { terms: Vec::with_capacity(all.len()), weights: Vec::new() };
        // The largest document frequency of each word over its fields.
        let mut frequency: Vec<u64> = Vec::new();
        for term in all {
            let next = index.len();
            let word = *index.entry(term.serialized_value_bytes()).or_insert(next);
            if word == frequency.len() {
                frequency.push(0);
            }
            frequency[word] = frequency[word].max(stats.doc_freq(term)?);
            words.terms.push((term, word));
        }
        words.weights = frequency.into_iter().map(|df| idf(df, docs)).collect();
        Ok(words)
    }

    /// The coverage of each of `found` (in its order).
    fn coverage(
        &self,
        searcher: &tantivy::Searcher,
        found: &[(f32, DocAddress)],
    ) -> Result<Vec<f32>, TextError> {
        let total: f32 = self.weights.iter().sum();
        if self.weights.is_empty() || found.is_empty() {
            // Nothing the query asks is missing from any hit.
            return Ok(vec![1.0; found.len()]);
        }
        if total <= 0.0 || !total.is_finite() {
            return Ok(vec![0.0; found.len()]);
        }
        // held[hit][word]
        let mut held = vec![vec![false; self.weights.len()]; found.len()];
        // The hits of each segment, by document (postings are read forward only).
        let mut by_segment: HashMap<u32, Vec<(u32, usize)>> = HashMap::new();
        for (i, (_, address)) in found.iter().enumerate() {
            by_segment.entry(address.segment_ord).or_default().push((address.doc_id, i));
        }
        for (segment, hits) in &mut by_segment {
            hits.sort_unstable();
            let reader = searcher.segment_reader(*segment);
            for &(term, word) in &self.terms {
                let inverted = reader.inverted_index(term.field())?;
                let Some(mut postings) = inverted.read_postings(term, IndexRecordOption::Basic)? else {
                    continue;
                };
                for &(doc, i) in hits.iter() {
                    if postings.doc() > doc {
                        continue;
                    }
                    if postings.seek(doc) == doc {
                        held[i][word] = true;
                    }
                    if postings.doc() == TERMINATED {
                        break;
                    }
                }
            }
        }
        Ok(held
            .iter()
            .map(|words| {
                let have: f32 = words.iter().zip(&self.weights).filter(|(h, _)| **h).map(|(_, w)| w).sum();
                (have / total).clamp(0.0, 1.0)
            })
            .collect())
    }
}

/// Tokens per field.
type Tokens = HashMap<Field, u64>;

/// Tokens per field over the live documents of `searcher`.
fn live_tokens(searcher: &tantivy::Searcher, fields: &[Field]) -> tantivy::Result<Tokens> {
    let mut tokens = HashMap::with_capacity(fields.len());
    for &field in fields {
        let mut total = 0u64;
        for segment in searcher.segment_readers() {
            let norms = segment.get_fieldnorms_reader(field)?;
            total += segment.doc_ids_alive().map(|doc| u64::from(norms.fieldnorm(doc))).sum::<u64>();
        }
        tokens.insert(field, total);
    }
    Ok(tokens)
}

/// Which records a keyword search may answer.
pub(crate) type Admit = Arc<dyn Fn(&Row) -> bool + Send + Sync>;

struct Fields {
    id: Field,
    key: Field,
    text: Field,
    /// Configured metadata fields, by name.
    meta: Vec<(String, Field)>,
}

/// One index's full-text projection.
pub(crate) struct TextIndex {
    config: TextIndexCreated,
    /// The index's files as they are (through `index.directory()`, tantivy's managed
    /// view, a read leaves each file's footer out).
    ram: RamDirectory,
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    reader: IndexReader,
    rows: Arc<RwLock<Rows>>,
    /// Changes since the last commit.
    pending: Mutex<u64>,
    /// [`live_tokens`] of a searcher generation.
    tokens: Mutex<Option<(u64, Arc<Tokens>)>>,
}

fn schema(config: &TextIndexCreated) -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("id", STRING);
    b.add_u64_field("key", FAST | INDEXED);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let options = TextOptions::default().set_indexing_options(indexing);
    b.add_text_field(TEXT_FIELD, options.clone());
    for name in &config.fields {
        b.add_text_field(name, options.clone());
    }
    b.build()
}

fn analyzer(config: &TextIndexCreated) -> Result<TextAnalyzer, TextError> {
    let stemmer = match &config.stemmer {
        Some(name) => Some(language(name).ok_or_else(|| TextError::Language(name.clone()))?),
        None => None,
    };
    let builder = match config.tokenizer {
        TextTokenizer::Simple => TextAnalyzer::builder(SimpleTokenizer::default()).dynamic(),
        TextTokenizer::Whitespace => TextAnalyzer::builder(WhitespaceTokenizer::default()).dynamic(),
    };
    let builder = builder.filter_dynamic(RemoveLongFilter::limit(TERM_BYTES_MAX)).filter_dynamic(LowerCaser);
    Ok(match stemmer {
        Some(language) => builder.filter_dynamic(Stemmer::new(language)).build(),
        None => builder.build(),
    })
}

fn field(schema: &Schema, name: &str) -> Result<Field, TextError> {
    Ok(schema.get_field(name)?)
}

impl TextIndex {
    /// An empty text index with `config`'s analyzer and fields.
    pub(crate) fn new(config: TextIndexCreated) -> Result<Self, TextError> {
        let ram = RamDirectory::create();
        let index = Index::create(ram.clone(), schema(&config), tantivy::IndexSettings::default())?;
        Self::open(config, ram, index, Rows::default())
    }

    fn open(
        config: TextIndexCreated,
        ram: RamDirectory,
        index: Index,
        rows: Rows,
    ) -> Result<Self, TextError> {
        index.tokenizers().register(ANALYZER, analyzer(&config)?);
        let schema = index.schema();
        let fields = Fields {
            id: field(&schema, "id")?,
            key: field(&schema, "key")?,
            text: field(&schema, TEXT_FIELD)?,
            meta: config
                .fields
                .iter()
                .map(|name| Ok((name.clone(), field(&schema, name)?)))
                .collect::<Result<_, TextError>>()?,
        };
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .memory_budget_per_thread(WRITER_MEMORY)
            .num_worker_threads(1)
            .num_merge_threads(1)
            .build();
        let writer = index.writer_with_options(options)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self {
            config,
            ram,
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
            rows: Arc::new(RwLock::new(rows)),
            pending: Mutex::new(0),
            tokens: Mutex::new(None),
        })
    }

    /// The configuration it was created with.
    pub(crate) fn config(&self) -> &TextIndexCreated {
        &self.config
    }

    /// Documents held.
    pub(crate) fn len(&self) -> usize {
        self.rows.read().by_id.len()
    }

    /// Insert or replace a document.
    pub(crate) fn upsert(
        &self,
        id: &str,
        text: &str,
        metadata: Option<&str>,
        partition: Option<&str>,
    ) -> Result<(), TextError> {
        let parsed = metadata.and_then(|m| serde_json::from_str::<Value>(m).ok());
        let mut doc = TantivyDocument::default();
        doc.add_text(self.fields.id, id);
        doc.add_text(self.fields.text, text);
        if let Some(Value::Object(map)) = &parsed {
            for (name, f) in &self.fields.meta {
                add_strings(&mut doc, *f, map.get(name));
            }
        }
        let mut rows = self.rows.write();
        let key = rows.next_key;
        rows.next_key += 1;
        doc.add_u64(self.fields.key, key);
        let writer = self.writer.lock();
        writer.delete_term(Term::from_field_text(self.fields.id, id));
        writer.add_document(doc)?;
        drop(writer);
        let id: Arc<str> = Arc::from(id);
        if let Some(old) = rows.by_id.insert(Arc::clone(&id), key) {
            rows.by_key.remove(&old);
        }
        let row = Row {
            id,
            metadata: metadata.map(Arc::from),
            parsed: parsed.map(Arc::new),
            partition: partition.map(Arc::from),
        };
        rows.by_key.insert(key, row);
        *self.pending.lock() += 1;
        Ok(())
    }

    /// Delete a document; false if it was not there.
    pub(crate) fn delete(&self, id: &str) -> bool {
        let mut rows = self.rows.write();
        let Some(key) = rows.by_id.remove(id) else { return false };
        rows.by_key.remove(&key);
        self.writer.lock().delete_term(Term::from_field_text(self.fields.id, id));
        *self.pending.lock() += 1;
        true
    }

    /// The text of a document, to re-index it with new metadata.
    pub(crate) fn set_metadata(
        &self,
        id: &str,
        text: &str,
        metadata: Option<&str>,
        partition: Option<&str>,
    ) -> Result<bool, TextError> {
        let current = {
            let rows = self.rows.read();
            rows.by_id.get(id).and_then(|k| rows.by_key.get(k)).map(|r| r.partition.clone())
        };
        let Some(old_partition) = current else { return Ok(false) };
        let partition = partition.map(Arc::from).or(old_partition);
        self.upsert(id, text, metadata, partition.as_deref())?;
        Ok(true)
    }

    /// Move a record to another partition (a migration); false if it is not there or
    /// not in `from`.
    pub(crate) fn move_record(&self, id: &str, from: &str, to: &str) -> bool {
        let mut rows = self.rows.write();
        let Some(key) = rows.by_id.get(id).copied() else { return false };
        let Some(row) = rows.by_key.get_mut(&key) else { return false };
        if row.partition.as_deref().unwrap_or("") != from {
            return false;
        }
        row.partition = (!to.is_empty()).then(|| Arc::from(to));
        true
    }

    /// Commit what changed since the last commit and make it searchable.
    fn refresh(&self) -> Result<(), TextError> {
        let mut pending = self.pending.lock();
        if *pending == 0 {
            return Ok(());
        }
        self.writer.lock().commit()?;
        self.reader.reload()?;
        *pending = 0;
        Ok(())
    }

    /// [`live_tokens`] of `searcher`, from the cache while its generation lasts.
    fn live_tokens(&self, searcher: &tantivy::Searcher) -> Result<Arc<Tokens>, TextError> {
        let generation = searcher.generation().generation_id();
        let mut cached = self.tokens.lock();
        if let Some((g, tokens)) = cached.as_ref() {
            if *g == generation {
                return Ok(Arc::clone(tokens));
            }
        }
        let fields: Vec<Field> =
            std::iter::once(self.fields.text).chain(self.fields.meta.iter().map(|(_, f)| *f)).collect();
        let tokens = Arc::new(live_tokens(searcher, &fields)?);
        *cached = Some((generation, Arc::clone(&tokens)));
        Ok(tokens)
    }

    /// The analyzer's terms of `text`, each once, in order.
    pub(crate) fn terms(&self, text: &str) -> Result<Vec<String>, TextError> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.text)?;
        let mut stream = analyzer.token_stream(text);
        let mut terms: Vec<String> = Vec::new();
        while stream.advance() {
            let t = &stream.token().text;
            if !terms.iter().any(|seen| seen == t) {
                terms.push(t.clone());
            }
        }
        Ok(terms)
    }

    /// A query of plain terms: any of them, in the text or any configured field.
    pub(crate) fn terms_query(&self, terms: &[String]) -> Box<dyn Query> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in terms {
            for f in std::iter::once(self.fields.text).chain(self.fields.meta.iter().map(|(_, f)| *f)) {
                let q = TermQuery::new(Term::from_field_text(f, term), IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(q)));
            }
        }
        Box::new(BooleanQuery::new(clauses))
    }

    /// A query in tantivy's syntax over the text and the configured fields.
    ///
    /// # Errors
    /// [`TextError::Syntax`] with the parser's message.
    pub(crate) fn parse_query(&self, text: &str) -> Result<Box<dyn Query>, TextError> {
        let defaults =
            std::iter::once(self.fields.text).chain(self.fields.meta.iter().map(|(_, f)| *f)).collect();
        let parser = QueryParser::for_index(&self.index, defaults);
        parser.parse_query(text).map_err(|e| TextError::Syntax(Box::new(e)))
    }

    /// The best `k` documents for `query` that `admit` lets through, best first, each
    /// with its coverage of the query's words ([`Words`]).
    pub(crate) fn search(
        &self,
        query: &dyn Query,
        k: usize,
        admit: Option<Admit>,
    ) -> Result<Vec<KeywordHit>, TextError> {
        self.refresh()?;
        let searcher = self.reader.searcher();
        let tokens = self.live_tokens(&searcher)?;
        let stats = LiveStats::new(&searcher, &tokens);
        let words = Words::of(query, &stats)?;
        let top = TopDocs::with_limit(k.max(1)).order_by_score();
        let rows = Arc::clone(&self.rows);
        let found = match admit {
            Some(admit) => {
                let admitted = move |key: u64| rows.read().by_key.get(&key).is_some_and(|row| admit(row));
                let collector = FilterCollector::new("key".to_owned(), admitted, top);
                searcher.search_with_statistics_provider(query, &collector, &stats)?
            }
            None => searcher.search_with_statistics_provider(query, &top, &stats)?,
        };
        let coverage = words.coverage(&searcher, &found)?;
        let rows = self.rows.read();
        let mut hits = Vec::with_capacity(found.len());
        for ((score, address), coverage) in found.into_iter().zip(coverage) {
            let column = searcher.segment_reader(address.segment_ord).fast_fields().u64("key")?;
            let Some(key) = column.first(address.doc_id) else { continue };
            // A row gone since the commit was deleted or replaced meanwhile.
            let Some(row) = rows.by_key.get(&key) else { continue };
            hits.push(KeywordHit {
                id: Arc::clone(&row.id),
                score,
                coverage,
                metadata: row.metadata.clone(),
                partition: row.partition.clone(),
            });
        }
        Ok(hits)
    }

    /// The committed index's files (`meta.json` and its segments' files), with the
    /// rows: what a snapshot holds.
    pub(crate) fn capture(&self) -> Result<Captured, TextError> {
        self.refresh()?;
        let directory = &self.ram;
        for _ in 0..CAPTURE_ATTEMPTS {
            let meta = directory.atomic_read(Path::new(META_FILE))?;
            let mut listed: Vec<PathBuf> =
                self.index.load_metas()?.list_segment_files().into_iter().collect();
            listed.sort();
            let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::with_capacity(listed.len() + 1);
            for path in listed {
                match directory.open_read(&path) {
                    Ok(slice) => files.push((path, slice.read_bytes()?.as_slice().to_vec())),
                    // A component the segment does not have (tantivy lists every kind),
                    // or one collected after a merge, which the check below sees.
                    Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // A merge that committed while the files were read changed meta.json.
            if directory.atomic_read(Path::new(META_FILE))? != meta {
                continue;
            }
            files.push((PathBuf::from(META_FILE), meta));
            let rows = self.rows.read();
            let mut captured: Vec<(u64, Row)> = rows.by_key.iter().map(|(k, r)| (*k, r.clone())).collect();
            captured.sort_by_key(|(k, _)| *k);
            return Ok(Captured { files, rows: captured, next_key: rows.next_key });
        }
        Err(TextError::Busy)
    }

    /// A text index from what [`TextIndex::capture`] took.
    pub(crate) fn restore(config: TextIndexCreated, captured: Captured) -> Result<Self, TextError> {
        let directory = RamDirectory::create();
        let mut managed: Vec<String> = Vec::with_capacity(captured.files.len());
        for (path, bytes) in &captured.files {
            if path.components().count() != 1 || path == Path::new(MANAGED_FILE) {
                return Err(TextError::FileName(path.clone()));
            }
            directory.atomic_write(path, bytes)?;
            if path != Path::new(META_FILE) {
                managed.push(path.to_string_lossy().into_owned());
            }
        }
        // The segment files are tantivy's to delete once merged away.
        directory.atomic_write(Path::new(MANAGED_FILE), &serde_json::to_vec(&managed)?)?;
        let index = Index::open(directory.clone())?;
        let mut rows = Rows { next_key: captured.next_key, ..Rows::default() };
        for (key, row) in captured.rows {
            rows.by_id.insert(Arc::clone(&row.id), key);
            rows.by_key.insert(key, row);
        }
        Self::open(config, directory, index, rows)
    }
}

/// The string values of a metadata field (a string, or an array holding strings).
fn add_strings(doc: &mut TantivyDocument, field: Field, value: Option<&Value>) {
    match value {
        Some(Value::String(s)) => doc.add_text(field, s),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::String(s) = item {
                    doc.add_text(field, s);
                }
            }
        }
        _ => {}
    }
}

/// A text index as a snapshot holds it.
pub(crate) struct Captured {
    /// tantivy's files, by path.
    pub(crate) files: Vec<(PathBuf, Vec<u8>)>,
    /// The rows, by key.
    pub(crate) rows: Vec<(u64, Row)>,
    pub(crate) next_key: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TextIndexCreated {
        TextIndexCreated {
            index: "t".into(),
            tokenizer: TextTokenizer::Simple,
            stemmer: Some("english".into()),
            fields: vec!["title".into()],
        }
    }

    fn answer(text: &TextIndex, words: &str) -> Vec<(String, u32)> {
        let terms = text.terms(words).unwrap();
        let hits = text.search(text.terms_query(&terms).as_ref(), 10, None).unwrap();
        hits.iter().map(|h| (h.id.to_string(), h.score.to_bits())).collect()
    }

    #[test]
    fn a_captured_index_restores_to_the_same_rows_and_scores() {
        let text = TextIndex::new(config()).unwrap();
        for round in 0..5 {
            for i in 0..50 {
                let body = format!("round {round} document {i} about thread priority {}", i % 7);
                text.upsert(&format!("d{i}"), &body, Some(r#"{"title":"sched"}"#), Some("p")).unwrap();
            }
            answer(&text, "priority");
        }
        assert!(text.delete("d3"));
        let before = answer(&text, "priority sched 3");
        let restored = TextIndex::restore(config(), text.capture().unwrap()).unwrap();
        assert_eq!(restored.len(), 49);
        assert_eq!(answer(&restored, "priority sched 3"), before);
        // It takes writes after the restore, with keys that do not collide.
        restored.upsert("d3", "priority again", None, None).unwrap();
        assert_eq!(restored.len(), 50);
        assert!(answer(&restored, "again").iter().any(|(id, _)| id == "d3"));
    }

    #[test]
    fn live_statistics_ignore_deleted_versions_tantivy_still_holds() {
        let once = TextIndex::new(config()).unwrap();
        let churned = TextIndex::new(config()).unwrap();
        for i in 0..20 {
            churned.upsert(&format!("d{i}"), "an old text about priority", None, None).unwrap();
        }
        answer(&churned, "priority"); // committed: the old versions are deleted, not merged
        for i in 0..20 {
            let body = format!("document {i} thread {}", i % 3);
            once.upsert(&format!("d{i}"), &body, None, None).unwrap();
            churned.upsert(&format!("d{i}"), &body, None, None).unwrap();
        }
        assert_eq!(answer(&churned, "thread 1 document"), answer(&once, "thread 1 document"));
    }
}
