"""Mean over subjects of their voxelwise scaling slope maps (subjects in one space)."""

from lmbrain.scripting import start
from lmbrain.voxel_scaling import write_group_mean_map

log = start(snakemake)
params = snakemake.params
info = write_group_mean_map(params.kind, params.subject_prefixes, params.prefix)
log.info("group slope map of %d subjects: %s", info["n_subjects"], info["files"])
