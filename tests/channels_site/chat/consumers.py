"""The chat's consumers, one async and one sync, as in the Channels tutorial.

Each tells its client where it runs — a "hello" after accepting, and with every chat message
the process and thread that received it from the sender (`sender_*`) and that delivered it
(`pid`, `thread`) — so the tests can see which worker holds a socket and that the sync
consumer's code runs on the server's pool threads.
"""

import json
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer

log = logging.getLogger("chat")


def here() -> dict:
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()
        log.info("connect consumer=async room=%s pid=%d", self.room_name, os.getpid())
        hello = {"type": "hello", "room": self.room_name, "user": str(self.scope["user"])}
        await self.send(text_data=json.dumps(hello | here()))

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)
        log.info("disconnect consumer=async room=%s code=%s", self.room_name, close_code)

    async def receive(self, text_data):
        message = json.loads(text_data)["message"]
        sender = here()
        await self.channel_layer.group_send(
            self.room_group_name,
            {
                "type": "chat.message",
                "message": message,
                "sender_pid": sender["pid"],
                "sender_thread": sender["thread"],
            },
        )

    async def chat_message(self, event):
        await self.send(text_data=json.dumps(chat_payload(event)))


class SyncChatConsumer(WebsocketConsumer):
    def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"syncchat_{self.room_name}"
        async_to_sync(self.channel_layer.group_add)(self.room_group_name, self.channel_name)
        self.accept()
        log.info("connect consumer=sync room=%s pid=%d", self.room_name, os.getpid())
        hello = {"type": "hello", "room": self.room_name, "user": str(self.scope["user"])}
        self.send(text_data=json.dumps(hello | here()))

    def disconnect(self, close_code):
        async_to_sync(self.channel_layer.group_discard)(self.room_group_name, self.channel_name)
        log.info("disconnect consumer=sync room=%s code=%s", self.room_name, close_code)

    def receive(self, text_data):
        message = json.loads(text_data)["message"]
        sender = here()
        async_to_sync(self.channel_layer.group_send)(
            self.room_group_name,
            {
                "type": "chat.message",
                "message": message,
                "sender_pid": sender["pid"],
                "sender_thread": sender["thread"],
            },
        )

    def chat_message(self, event):
        self.send(text_data=json.dumps(chat_payload(event)))


def chat_payload(event: dict) -> dict:
    """What a client is sent for a message of its room."""
    return {
        "type": "chat",
        "message": event["message"],
        "sender_pid": event["sender_pid"],
        "sender_thread": event["sender_thread"],
    } | here()
