"""The paper's study: ``study.py`` one seed (foundation + methods), ``run.py`` every seed and the
output folder, ``results.py`` / ``tables.py`` / ``figures.py`` its CSV, Tables 1-3 and Figure 1."""

from taugate.reproduce.run import config_from_file, reproduce
from taugate.reproduce.study import StudyData, load_study_data, run_seed, train_foundation

__all__ = [
    "StudyData",
    "config_from_file",
    "load_study_data",
    "reproduce",
    "run_seed",
    "train_foundation",
]
