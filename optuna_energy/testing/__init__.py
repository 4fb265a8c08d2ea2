"""Conformance suites for plug-ins, as Optuna ships ``optuna.testing.pytest_samplers``.

A plug-in's tests subclass a suite and give it a fixture; pytest then runs every check on it:

.. code-block:: python

    from optuna_energy.testing import MeterSuite, MetricSuite

    class TestAcmeMeter(MeterSuite, MeterSettingsSuite):
        @pytest.fixture
        def meter(self):
            return AcmeMeter(AcmeSettings())  # a fresh, open meter for each check

        @pytest.fixture
        def settings(self):
            return AcmeSettings(sensor="/dev/acme1")  # not the defaults: the round trip shows more

    class TestFlops(MetricSuite):
        @pytest.fixture
        def metric(self):
            return FLOPS  # registered with optuna_energy.metrics.register

``LayerKindTestCase`` (``optuna_energy.testing.layer_kinds``) checks a layer kind the same way.
Every built-in meter, metric and layer kind passes them (``tests/test_conformance.py``). Nothing else in the
package imports this one: it needs pytest, which the package does not.
"""

from optuna_energy.testing.meter_suite import MeterSettingsSuite, MeterSuite
from optuna_energy.testing.metric_suite import MetricSuite, tiny_model_under_test

__all__ = ["MeterSettingsSuite", "MeterSuite", "MetricSuite", "tiny_model_under_test"]
