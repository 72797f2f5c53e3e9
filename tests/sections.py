"""Which typed config each preset section builds into (grows with the stages)."""


def _datagen():
    from datagen.spec import CorpusSpec
    return CorpusSpec


SECTIONS = {"datagen": _datagen}
