"""The record modes a run can take, apart from the recorder (`rlhf_eval.recording`), so that
pytest's options can name them without loading vcrpy (README's option table says what each does).
"""
RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")
