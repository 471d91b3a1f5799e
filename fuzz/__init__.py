"""Coverage-guided fuzzing (atheris, libFuzzer) of the protocol decoders and the ingest path.

    python -m fuzz                      # the harnesses
    python -m fuzz protocol --seconds 300
    python -m fuzz ingest --seconds 300
    python -m fuzz all --seconds 60     # each in turn
    python -m fuzz protocol --reproduce build/fuzz/protocol/crashes/crash-...

Each harness is a module ``fuzz.fuzz_NAME`` with ``seeds()`` (valid inputs made from valid
records: the seed corpus, rewritten at every run) and ``test_one_input(data)``, which raises on
a finding: any exception but the ones the contract allows, or a broken invariant.  The corpus
grows in build/fuzz/NAME/corpus, findings land in build/fuzz/NAME/crashes.  The property tests
(tests/test_fuzz_protocol.py) cover the same contracts with hypothesis; a finding of either
becomes a regression test there.  Results: docs/security.md "Fuzzing".
"""
