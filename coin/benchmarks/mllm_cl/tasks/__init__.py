"""MLLM-CL's nine tasks: five domains (RS, Med, AD, Sci, Fin) and four abilities (OCR, Math, VP, APP).

One file each, registered on import; the two benchmarks are ``coin.benchmarks.mllm_cl.benchmark``.
"""

from coin.benchmarks.mllm_cl.tasks import ad, app, fin, math, med, ocr, rs, sci, vp  # noqa: F401
