#!/usr/bin/env python3
"""Runs unittest test modules of keyledger's client tests and fails unless every test
ran and passed: a skipped test, an expected failure or an unexpected success counts as
not passing, and so does running no test at all.

  run.py test_openstack_cli test_castellan
"""
import sys
import unittest


def main(names):
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    not_passed = (len(result.failures) + len(result.errors) + len(result.skipped)
                  + len(result.expectedFailures) + len(result.unexpectedSuccesses))
    passed = result.testsRun - not_passed
    print(f"{passed} of {result.testsRun} tests passed; "
          f"{len(result.skipped)} skipped (counted as not passing)")
    return 0 if result.testsRun > 0 and not_passed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
