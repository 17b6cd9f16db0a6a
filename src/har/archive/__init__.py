"""Video archives: a resumable SQLite index of clip results, search by action and by
example, exports, and a Ray scale-out engine (``har index/search/similar/export-index``).

* :mod:`har.archive.db`: the schema and connections (WAL, one transaction per video);
* :mod:`har.archive.indexer`: which files to (re)do, and writing a video's results;
* :mod:`har.archive.search`: segments ranked by score for a label, counts per label;
* :mod:`har.archive.similar`: nearest clips by cosine similarity (a FAISS index);
* :mod:`har.archive.export`: ActivityNet JSON, CSV and Parquet;
* :mod:`har.archive.ray_engine`: the same pipeline as a Ray Data job.
"""
