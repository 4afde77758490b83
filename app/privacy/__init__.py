"""Personal data: pseudonyms and masks, erasing a phone's data, and purging old data."""
