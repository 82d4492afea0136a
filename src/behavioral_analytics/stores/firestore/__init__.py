"""The `Store` port on Firestore (google-cloud-firestore), as a package of layered modules;
`store` holds the facade, `FirestoreStore`, and the map of the others."""

from behavioral_analytics.stores.firestore.store import FirestoreStore

__all__ = ["FirestoreStore"]
