"""Fetch one download group of a dataset (its shared files, or one subject's) from S3."""

from lmbrain.fetch import RemoteFile, S3Source, fetch
from lmbrain.io import save_json
from lmbrain.scripting import start

log = start(snakemake)
p = snakemake.params
source = S3Source(p.accession, p.endpoint, p.bucket)
files = [RemoteFile(key, size, etag) for key, size, etag in p.files]
done = fetch(source, files, p.root)
log.info(
    "%s: fetched %d files, %d already present",
    source.url(),
    len(done["fetched"]),
    len(done["present"]),
)
save_json(snakemake.output[0], {"source": source.url(), "root": p.root, "files": p.files})
