"""Finding NLTK's corpora, and saying exactly what is missing when they are not.

NLTK downloads its corpora at run time, which fails offline, and since NLTK
3.9 `word_tokenize` needs `punkt_tab`, not the `punkt` most guides name.
tfcompress never downloads anything silently: parts that need data check for
it when they are configured and raise `MissingNLTKData` naming the exact
resource, the `NLTK_DATA` variable and the command that downloads it
(`tfcompress text download <resource>`). The Treebank and regexp tokenizers and
the Porter, Snowball and Lancaster stemmers need no data.
"""

import os

__all__ = ["MissingNLTKData", "require", "download", "RESOURCES"]

# resource name -> (path NLTK looks up, what it is for)
RESOURCES = {
    "punkt_tab": ("tokenizers/punkt_tab/{language}/", "tokenizer='word_tokenize'"),
    "stopwords": ("corpora/stopwords", "stopword removal"),
    "wordnet": ("corpora/wordnet", "WordNet lemmatisation (lemmatize=True) and synonyms (transfer_set's wordnet_synonym)"),
    "averaged_perceptron_tagger_eng": ("taggers/averaged_perceptron_tagger_eng/", "part-of-speech tagging (transfer_set's pos_swap and wordnet_synonym)"),
}


class MissingNLTKData(LookupError):
    """An NLTK corpus that a configured step needs is not on this machine."""


def require(resource, language="english"):
    """Checks that an NLTK resource is installed; returns its path.

    Args:
        resource: one of `RESOURCES` (`"punkt_tab"`, `"stopwords"`, `"wordnet"`,
            `"averaged_perceptron_tagger_eng"`).
        language: for `punkt_tab`, the language whose model is needed.

    Raises:
        MissingNLTKData: with the resource, where NLTK looked, and the fix.
    """
    import nltk

    if resource not in RESOURCES:
        raise ValueError(
            f"Unknown NLTK resource {resource!r}; tfcompress knows {sorted(RESOURCES)}."
        )
    path, purpose = RESOURCES[resource]
    path = path.format(language=language)
    candidates = [path]
    if path.startswith("corpora/"):  # corpora may be installed as a zip only
        name = path.split("/")[1]
        candidates.append(f"corpora/{name}.zip/{name}/")
    for candidate in candidates[:-1]:
        try:
            return nltk.data.find(candidate)
        except LookupError:
            pass
    try:
        return nltk.data.find(candidates[-1])
    except LookupError as err:
        refused = list(getattr(err, "_nltk_refused_writable", ()))
        what = f"{resource!r}" + (f" ({language})" if "{language}" in RESOURCES[resource][0] else "")
        lines = [
            f"NLTK data {what} is missing: {purpose} needs it (NLTK looks for {path!r}).",
        ]
        if resource == "punkt_tab":
            lines.append(
                "NLTK >= 3.9 reads 'punkt_tab'; the older pickled 'punkt' package "
                "does not satisfy word_tokenize any more."
            )
        if refused:
            lines.append(
                f"NLTK refused to read {', '.join(map(repr, refused))} because it is "
                f"writable by other accounts. Fix: chmod -R go-w {refused[0]}"
            )
        lines += [
            "NLTK searched: " + ", ".join(nltk.data.path),
            f"Fix: set the NLTK_DATA environment variable to a folder that holds "
            f"{path}, or download it (needs network): "
            f"`tfcompress text download {resource}` "
            f"(the same as `python -m nltk.downloader {resource}`).",
        ]
        if resource == "punkt_tab":
            lines.append("Data-free alternatives: tokenizer='regexp' or 'treebank'.")
        raise MissingNLTKData("\n".join(lines)) from None


def download(resources, directory=None, quiet=False):
    """Downloads NLTK resources (needs network). Returns {resource: ok}.

    Only `tfcompress text download` and explicit calls download; nothing in
    tfcompress does so on its own.
    """
    import nltk

    if directory is None:
        directory = os.environ.get("NLTK_DATA", "").split(os.pathsep)[0] or None
    results = {}
    for resource in resources:
        results[resource] = bool(nltk.download(resource, download_dir=directory, quiet=quiet))
    return results
