"""Keyword-spotting (wake-word) training domain code: plain Python/torch/MLflow, no Dagster.

Entry points for the orchestration layer:

* ``dataset.build_keyword_manifest(words, segments, curated_segments, audio_files, DatasetConfig)``
  -> clip manifest (Parquet-ready), and ``dataset.dataset_lineage(manifest)`` -> flat counts
* ``pipeline.train_and_register(manifest, TrainingConfig, tracking_uri=, model_name=, ...)``
  -> ``TrainingOutcome`` (registered version, test metrics, lineage, timings)
* ``registry.promote_if_better(manifest, tracking_uri=, model_name=, version=, floors=)``
  -> ``PromotionDecision``; ``registry.should_promote`` is the pure rule behind it
* ``registry.load_model_bundle(model_uri, tracking_uri)`` and
  ``detect.detect_stream(bundle, audio_16k, threshold=None, hop_s=0.1)`` -> ``list[Detection]``
"""
