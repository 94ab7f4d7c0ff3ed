"""Which client errors a stage asks again after, instead of failing (and restarting the process)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from pipeline.runtime.kafka import _retriable


def test_a_request_cut_off_by_a_dying_broker_is_asked_again() -> None:
    # Seen in the cluster chaos run: a node SIGKILLed while a changelog restore asked for watermarks.
    assert _retriable(KafkaException(KafkaError(KafkaError._DESTROY_BROKER)))
    assert _retriable(KafkaException(KafkaError(KafkaError._TRANSPORT)))
    # "Failed to get watermark offsets: Broker: Not leader for partition", not flagged retriable
    assert _retriable(KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)))
    assert _retriable(KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE)))


def test_a_transaction_to_abort_is_not_asked_again() -> None:
    # "290 message(s) timed out": retrying the commit outlasted the transaction timeout under load
    # and the producer was fenced; the runner must abort and rewind at once.
    assert not _retriable(KafkaException(KafkaError(KafkaError._TIMED_OUT, txn_requires_abort=True)))
    assert not _retriable(KafkaException(KafkaError(KafkaError._TRANSPORT, txn_requires_abort=True)))
    assert not _retriable(KafkaException(KafkaError(KafkaError._FENCED, fatal=True)))


def test_other_errors_fail_the_stage() -> None:
    assert not _retriable(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
    assert not _retriable(ValueError("not Kafka"))
