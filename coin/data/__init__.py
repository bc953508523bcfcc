"""Data: where a run's files are (``layout``), one record validator (``records``) shared by the
loader (``coin_json``, ``benchmark``) and ``coin data check`` (``check``), ``Sample``, answer
files, CoIN-Synth and the raw-data builders. Nothing here imports torch."""
