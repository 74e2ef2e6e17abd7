"""A Python consumer of tidings events: pika reads them from a queue bound to the topic
exchange, and the `cloudevents` SDK's AMQP binding parses each one, structured or binary.

Usage: consume_cloudevents.py URL EXCHANGE BINDING_KEY COUNT
Prints `ready` once its queue is bound, then one JSON line per event parsed.
"""

import json
import sys

import pika
from cloudevents.core.bindings import amqp


def main() -> None:
    url, exchange, key, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange=exchange, routing_key=key)
    print("ready", flush=True)
    received = 0
    for method, properties, body in channel.consume(queue, inactivity_timeout=30):
        if method is None:
            sys.exit("no event within 30 s")
        message = amqp.AMQPMessage(
            properties={"content-type": properties.content_type}
            if properties.content_type
            else {},
            application_properties=dict(properties.headers or {}),
            application_data=body,
        )
        event = amqp.from_amqp_event(message)
        attributes = event.get_attributes()
        print(
            json.dumps(
                {
                    "mode": "binary" if properties.headers else "structured",
                    "id": event.get_id(),
                    "type": event.get_type(),
                    "source": event.get_source(),
                    "subject": attributes.get("subject"),
                    "tenantid": attributes.get("tenantid"),
                    "correlationid": attributes.get("correlationid"),
                    "time": event.get_time().isoformat() if event.get_time() else None,
                    "data": event.get_data(),
                }
            ),
            flush=True,
        )
        channel.basic_ack(method.delivery_tag)
        received += 1
        if received == count:
            break
    connection.close()


if __name__ == "__main__":
    main()
