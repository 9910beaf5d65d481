"""Models (rules/train.smk): DAN+ on frames and faces, ridge models on audio and AUs, fusion."""
