"""What every app shares and no app owns: helpers with no models and no views."""
