"""Names vulture (the dead-code check in .ci/run) cannot see being used: fields of records
written as JSON, a cffi struct field, pytest's hooks."""

from harness import report

report.CampaignSummary.coverage
report.CampaignSummary.native_coverage
report.CampaignSummary.custom_mutator
report.CampaignSummary.corpus_dir
report.CampaignSummary.fuzzer_exit
report.CampaignSummary.fuzzer_starts
report.CampaignSummary.crash_to_regression_s
report.CampaignSummary.first_detection_s
target_path  # struct hakx_options, set through cffi
pytest_collect_file  # regressions/conftest.py: pytest hooks and Item/File methods
collect
runtest
reportinfo
