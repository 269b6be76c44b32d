"""segmenter package."""
