"""Action Units (rules/aus.smk): AU intensities per frame from the faces of a shard."""
