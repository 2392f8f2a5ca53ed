"""Kafka: the source for Debezium change topics and the dead-letter topic (engine-neutral).

One module per responsibility; none imports an engine, and ``confluent_kafka`` is imported
only when a client is created (:func:`cdcflow.io.kafka.client.confluent`):

* :mod:`~cdcflow.io.kafka.settings`: librdkafka settings (defaults, managed keys, secrets kept
  wrapped) and :class:`~cdcflow.io.kafka.settings.KafkaSettings`, the picklable settings a
  worker reads with;
* :mod:`~cdcflow.io.kafka.client`: the one import of ``confluent_kafka``, client creation,
  librdkafka's log and the error types;
* :mod:`~cdcflow.io.kafka.logs`: summarising librdkafka's repeated log lines;
* :mod:`~cdcflow.io.kafka.poller`: the per-partition consumer loop, one ``RawBatch`` per poll,
  and committing offsets to the group;
* :mod:`~cdcflow.io.kafka.offsets`: where each partition starts and ends (start modes, the
  group's committed offsets, the corrected end offsets);
* :mod:`~cdcflow.io.kafka.source`: :class:`~cdcflow.io.kafka.source.KafkaSource`, the
  :class:`~cdcflow.core.source.Source` implementation (discovery, outages, bounded read);
* :mod:`~cdcflow.io.kafka.config`: the ``source: {type: kafka}`` YAML model;
* :mod:`~cdcflow.io.kafka.dead_letters`: ``dead_letter: {type: kafka}``.

The Beam reader (a splittable DoFn) is :class:`cdcflow.beam.kafka.ReadFromKafka`; the Flink
engine reads with Flink's own Kafka connector (:mod:`cdcflow.flink.plan`).
"""
