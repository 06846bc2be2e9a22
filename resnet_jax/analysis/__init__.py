"""Analysis: runs become records. `trained` restores a work directory's models; `landscape`, `lesion`
and `responses` compute on them and write JSON; `analyses` is the registry a study's ANALYSES names.
Nothing here draws: figures are the report's."""
