"""A legacy producer, as our users run it today: pika publishing the flat JSON envelope
(id, type, source, timestamp, tenant_id, correlation_id, data, metadata) to a topic exchange,
persistent, with publisher confirms.

Usage: publish_legacy.py URL EXCHANGE COUNT
Prints the ids it published, one per line.
"""

import json
import sys
import uuid
from datetime import datetime, timezone

import pika


def main() -> None:
    url, exchange, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    channel.confirm_delivery()
    for n in range(count):
        event = {
            "id": f"evt_{uuid.uuid4()}",
            "type": "order.created",
            "source": "oms-service",
            "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "tenant_id": "tenant_abc",
            "correlation_id": f"req_{n}",
            "data": {
                "order_id": f"order_{n}",
                "order_number": f"ORD-2024-{n:03}",
                "customer_id": "cust_123",
                "items": [
                    {"product_id": "prod_456", "sku": "SKU001", "quantity": 2, "price": 500.00}
                ],
                "total": 1000.00,
                "currency": "UAH",
                "status": "pending",
            },
            "metadata": {"version": "1.0", "user_id": "user_123"},
        }
        channel.basic_publish(
            exchange=exchange,
            routing_key="order.created",
            body=json.dumps(event).encode(),
            properties=pika.BasicProperties(
                content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent
            ),
            mandatory=True,
        )
        print(event["id"], flush=True)
    connection.close()


if __name__ == "__main__":
    main()
